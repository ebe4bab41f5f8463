"""`exchange backup` / `exchange restore` end to end on a real broker: a home backed up while
its gateway runs, wiped, restored: sealed fields published before the backup decrypt again
for the same subscriber, and the audit log verifies from Kafka. Wrong passphrase, tampered
files or manifest, and a stale backup are refused with a clear line."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.backup_cmd import PASSPHRASE_ENV
from cli.main import app
from exchange.client import ExchangeClient
from tests.integration.test_audit_tamper import verify
from tests.support.gateway import ThreadGateway
from tests.support.kafka import security_for
from tests.support.scenario import build, grant, person, pull

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PASSPHRASE = "correct horse battery staple"


def cli(home: Path, bootstrap: str, *args: str, passphrase: str = PASSPHRASE) -> tuple[int, str]:
    env = {"EXCHANGE_HOME": str(home), "EXCHANGE_KAFKA_BOOTSTRAP": bootstrap}
    env |= security_for(bootstrap).as_env() | {PASSPHRASE_ENV: passphrase}
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def flip(path: Path, at: int = -5) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_backup_wipe_restore_decrypts_and_verifies(tmp_path: Path, kafka_bootstrap: str) -> None:
    home, b1 = tmp_path / "home", tmp_path / "backup-1"
    gw = ThreadGateway(home, kafka_bootstrap).start()
    with gw.admin() as admin:
        s = build(admin, gw.url)
    # Every sealed field: citizen_id, phone, address.street (sensitive) and income (secret).
    grant(s, ["name", "citizen_id", "income", "phone", "address", "address.street"])
    marker = "Backed Up Resident"
    sent = [{**person(5), "name": marker}, person(6), person(7)]
    s.publisher.publish(s.topic, [{"key": "r1", "value": sent[0]}])
    # Records under older keys too: every data key of the topic and the department's KEK
    # rotated between publishes.
    assert s.steward.call("POST", "/v1/keys/rotate", json={"topic": s.topic})
    s.publisher.publish(s.topic, [{"key": "r2", "value": sent[1]}])
    with gw.admin() as admin:
        admin.call("POST", f"/v1/kms/keks/{s.owner}/rotate")
    s.publisher.publish(s.topic, [{"key": "r3", "value": sent[2]}])
    sub_id, sub_secret = s.subscriber.client_id, s.subscriber._secret
    try:
        code, out = cli(home, kafka_bootstrap, "backup", "--to", str(b1))  # online
        assert code == 0, out
        # The backup signed a checkpoint of the log's head (not one a minute old).
        signed = int(re.search(r"checkpoint signed at (\d+)", out)[1])  # type: ignore[index]
    finally:
        s.close()
        gw.stop()
    manifest = json.loads((b1 / "manifest.json").read_text())
    names = {f["name"] for f in manifest["files"]}
    assert {"exchange.db", "audit.db", "master.key", "audit.key", "kms/keystore.bin"} <= names
    assert {"audit-checkpoint.key", "audit-checkpoint.pub"} <= names  # the checkpoint signer
    assert all(marker.encode() not in p.read_bytes() for p in b1.iterdir())  # all encrypted
    shutil.rmtree(home)  # the machine is lost; Kafka (the broker's concern) survives

    # Refusals: nothing is written to the home.
    code, out = cli(home, kafka_bootstrap, "restore", "--from", str(b1), passphrase="x" * 20)
    assert code == 1 and "wrong passphrase" in out, out
    bad = tmp_path / "tampered"
    shutil.copytree(b1, bad)
    flip(bad / "exchange.db.enc")
    code, out = cli(home, kafka_bootstrap, "restore", "--from", str(bad))
    assert code == 1 and "exchange.db is missing or was altered" in out, out
    forged = json.loads((b1 / "manifest.json").read_text())
    forged["audit"]["size"] += 1000  # to slip a stale backup past the check
    (bad / "manifest.json").write_text(json.dumps(forged, indent=2, sort_keys=True))
    code, out = cli(home, kafka_bootstrap, "restore", "--from", str(bad))
    assert code == 1 and "altered" in out, out
    assert not (home / "exchange.db").exists() and not (home / "master.key").exists()

    code, out = cli(home, kafka_bootstrap, "restore", "--from", str(b1))
    assert code == 0, out
    gw2 = ThreadGateway(home, kafka_bootstrap).start()
    try:
        with ExchangeClient(gw2.url, sub_id, sub_secret) as reader:
            sub = reader.subscribe(s.topic)
            got = {r["key"]: r["value"] for r in pull(reader, sub, 3)}
        assert sorted(got) == ["r1", "r2", "r3"]
        for key, value in zip(("r1", "r2", "r3"), sent, strict=True):
            # Every sealed field opened again, under each key version it was sealed with.
            granted = {f: value[f] for f in ("name", "citizen_id", "income", "phone", "address")}
            assert got[key] == granted, key
    finally:
        gw2.stop()
    code, out = verify(home, kafka_bootstrap, "--source", "kafka")
    assert code == 0, out
    with sqlite3.connect(home / "audit.db") as db:  # the signed checkpoint came back with it
        sizes = {n for (n,) in db.execute("SELECT size FROM audit_checkpoints")}
    assert signed in sizes and signed >= 10, (signed, sizes)

    # The restored gateway wrote audit events (a subscription) after the backup: restoring
    # the backup again would lose them, so it is refused unless accepted explicitly.
    shutil.rmtree(home)
    code, out = cli(home, kafka_bootstrap, "restore", "--from", str(b1))
    assert code == 1 and "stale backup" in out, out
    assert not (home / "exchange.db").exists()
    code, out = cli(home, kafka_bootstrap, "restore", "--from", str(b1), "--allow-stale")
    assert code == 0, out
    # --force over a live home, refused as stale: the home keeps its own files, byte for byte
    # (a refused restore must never leave a home without its master key).
    (home / "master.key").write_bytes(b"this home's own key")
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    code, out = cli(home, kafka_bootstrap, "restore", "--from", str(b1), "--force")
    assert code == 1 and "stale backup" in out, out
    assert {p: p.read_bytes() for p in home.rglob("*") if p.is_file()} == before
    code, out = cli(home, kafka_bootstrap, "restore", "--from", str(b1), "--force",
                    "--allow-stale")  # fmt: skip
    assert code == 0, out
    assert (home / "master.key").read_bytes() != b"this home's own key"
    assert not list(home.rglob("*.pre-restore"))

    # A recovery key split 2-of-3 instead of a passphrase: no one custodian can restore.
    b2, home2 = tmp_path / "backup-split", tmp_path / "home2"
    code, out = cli(home, kafka_bootstrap, "backup", "--to", str(b2), "--shares", "3",
                    "--threshold", "2", passphrase="")  # fmt: skip
    assert code == 0, out
    shares = re.findall(r"exs1-\S+", out)
    assert len(shares) == 3 and not any(s in p.read_text(errors="ignore")
                                        for s in shares for p in b2.iterdir())  # fmt: skip
    code, out = cli(home2, kafka_bootstrap, "restore", "--from", str(b2), "--share", shares[0])
    assert code == 1 and "too few recovery shares: 1 given, 2 needed" in out, out
    # (--allow-stale: this home was itself restored from the stale backup above)
    code, out = cli(home2, kafka_bootstrap, "restore", "--from", str(b2), "--allow-stale",
                    "--share", shares[2], "--share", shares[0])  # fmt: skip
    assert code == 0, out
    assert (home2 / "master.key").read_bytes() == (home / "master.key").read_bytes()
