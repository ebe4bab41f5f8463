"""`exchange backup` / `exchange restore` with a PostgreSQL control plane (throwaway cluster,
real broker): a gateway on its own database publishes a sealed field, the backup pg_dumps the
database on one snapshot, the database is dropped and the home wiped, a restore into a
non-empty database is refused without --force, then the restore (pg_restore) brings back a
gateway whose subscriber reads the plaintext again and an audit log that verifies from Kafka."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from cli.backup_cmd import PASSPHRASE_ENV
from cli.main import app
from exchange.client import ExchangeClient
from exchange.pgbackup import DUMP
from tests.integration.test_audit_tamper import verify
from tests.integration.test_registry_postgres import pg_url  # noqa: F401 - the cluster fixture
from tests.support.gateway import ThreadGateway
from tests.support.kafka import security_for
from tests.support.scenario import build, grant, person

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PASSPHRASE = "correct horse battery staple"


def admin_sql(server: str, *statements: str) -> None:
    engine = create_engine(server, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        for statement in statements:
            c.execute(text(statement))
    engine.dispose()


def cli(home: Path, bootstrap: str, db: str, *args: str) -> tuple[int, str]:
    env = {"EXCHANGE_HOME": str(home), "EXCHANGE_KAFKA_BOOTSTRAP": bootstrap,
           "EXCHANGE_DATABASE_URL": db, PASSPHRASE_ENV: PASSPHRASE}  # fmt: skip
    result = CliRunner().invoke(app, list(args), env=env | security_for(bootstrap).as_env())
    return result.exit_code, result.output


def test_pg_dump_backup_drop_database_restore(
    tmp_path: Path,
    kafka_bootstrap: str,
    pg_url: str,  # noqa: F811
) -> None:
    # The gateway's role logs in with a password (scram): pg_dump/pg_restore must get it
    # through PGPASSWORD, since they run with --no-password.
    require_password(pg_url, "bk")
    db = (
        make_url(pg_url)
        .set(username="bk", password="s3cret pass@", database="exchange_bk")
        .render_as_string(hide_password=False)
    )
    admin_sql(pg_url, "DROP DATABASE IF EXISTS exchange_bk", "CREATE DATABASE exchange_bk OWNER bk")
    home, b1 = tmp_path / "home", tmp_path / "backup"
    gw = ThreadGateway(home, kafka_bootstrap, database_url=db).start()
    with gw.admin() as admin:
        s = build(admin, gw.url)
    grant(s, ["name", "citizen_id", "phone"])  # phone is sealed: opened for the grantee
    marker = "Dumped Resident"
    s.publisher.publish(s.topic, [{"key": "r1", "value": {**person(7), "name": marker}}])
    sub_id, sub_secret = s.subscriber.client_id, s.subscriber._secret
    try:
        code, out = cli(home, kafka_bootstrap, db, "backup", "--to", str(b1))  # online
        assert code == 0 and "s3cret" not in out, out
    finally:
        s.close()
        gw.stop()
    manifest = json.loads((b1 / "manifest.json").read_text())
    names = {f["name"] for f in manifest["files"]}
    assert {DUMP, "master.key", "kms/keystore.bin"} <= names and "exchange.db" not in names
    assert manifest["control_plane"] == "postgresql" and manifest["audit"]["size"] > 0
    assert all(marker.encode() not in p.read_bytes() for p in b1.iterdir())  # all encrypted

    # The machine and the database are lost; Kafka (the broker's concern) survives.
    shutil.rmtree(home)
    admin_sql(pg_url, "DROP DATABASE exchange_bk WITH (FORCE)",
              "CREATE DATABASE exchange_bk OWNER bk")  # fmt: skip
    admin_sql(db, "CREATE TABLE squatter (id int)")
    code, out = cli(home, kafka_bootstrap, db, "restore", "--from", str(b1))
    assert code == 1 and "database is not empty" in out, out
    assert not (home / "master.key").exists()
    code, out = cli(home, kafka_bootstrap, "sqlite:///" + str(tmp_path / "x.db"),
                    "restore", "--from", str(b1))  # fmt: skip
    assert code == 1 and "holds a postgresql control plane" in out, out
    admin_sql(db, "DROP TABLE squatter")

    code, out = cli(home, kafka_bootstrap, db, "restore", "--from", str(b1))
    assert code == 0, out
    assert audit_size(db) == manifest["audit"]["size"]  # the dump and manifest: one snapshot
    gw2 = ThreadGateway(home, kafka_bootstrap, database_url=db).start()
    try:
        with ExchangeClient(gw2.url, sub_id, sub_secret) as reader:
            sub = reader.subscribe(s.topic)
            page = reader.poll(sub, wait_ms=5000)
        values = [r["value"] for r in page["records"]]
        assert [v["name"] for v in values] == [marker]
        assert values[0]["phone"] == person(7)["phone"]  # a sealed field, opened again
    finally:
        gw2.stop()
    code, out = verify(home, kafka_bootstrap, "--source", "kafka",
                       env={"EXCHANGE_DATABASE_URL": db})  # fmt: skip
    assert code == 0, out

    # Over a database that has moved on (the restored gateway audited a subscription):
    # --force replaces it (pg_restore --clean), --allow-stale accepts losing those events.
    assert audit_size(db) > manifest["audit"]["size"]
    code, out = cli(home, kafka_bootstrap, db, "restore", "--from", str(b1), "--force")
    assert code == 1 and "stale backup" in out, out
    code, out = cli(home, kafka_bootstrap, db, "restore", "--from", str(b1), "--force",
                    "--allow-stale")  # fmt: skip
    assert code == 0, out
    assert audit_size(db) == manifest["audit"]["size"]


def audit_size(db: str) -> int:
    engine = create_engine(db, poolclass=NullPool)
    with engine.connect() as c:
        size = int(c.execute(text("SELECT size FROM audit_head")).scalar_one())
    engine.dispose()
    return size


def require_password(server: str, role: str) -> None:
    """A role ``role`` whose TCP logins need its password (an hba line ahead of trust)."""
    admin_sql(
        server,
        f"DROP ROLE IF EXISTS {role}",
        f"CREATE ROLE {role} LOGIN PASSWORD 's3cret pass@'",
        "CREATE TEMP TABLE hba AS SELECT 'host all {role} 127.0.0.1/32 scram-sha-256' AS line "
        "UNION ALL SELECT unnest(string_to_array(pg_read_file(current_setting('hba_file')), "
        "E'\\n'))".replace("{role}", role),
        "DO $$ BEGIN EXECUTE format('COPY hba TO %L', current_setting('hba_file')); END $$",
        "SELECT pg_reload_conf()",
    )
