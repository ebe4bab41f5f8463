"""The PostgreSQL control plane crashes (``pg_ctl stop -m immediate``: the server processes are
killed without a shutdown checkpoint, as when its host dies) while clients publish and consume
continuously, and comes back on the same address after a few seconds.

/readyz names the database at once; publishes are refused with a clear 503 (never a 500,
never a hang); once the server is back the gateway's pools reconnect by themselves, every
key the clients kept retrying ends answered, nothing acknowledged is lost by either consumer
and the audit log verifies from Kafka. The cluster is this module's own (initdb on a free
port), skipped where the PostgreSQL server binaries are not installed.
``EXCHANGE_LONG_TESTS=1``: down 40 s instead of 4 s."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from exchange.kafka.broker import free_port
from tests.e2e.test_fault_open_transaction import until
from tests.integration.test_audit_tamper import verify
from tests.support.gateway import ThreadGateway
from tests.support.load import load_for
from tests.support.scenario import build

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

DOWN_S = 40.0 if os.environ.get("EXCHANGE_LONG_TESTS") == "1" else 4.0


@dataclass
class Cluster:
    bindir: Path
    root: Path
    port: int
    prefix: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://exchange@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.prefix, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("-o", options, "-w", "-t", "90", "-l", str(self.root / "log"), "start")

    def crash(self) -> None:
        self.ctl("-m", "immediate", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        pytest.skip("PostgreSQL server binaries not installed")
    root = Path(tempfile.mkdtemp(prefix="fault-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: the postgres user runs the cluster
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    c = Cluster(Path(initdb).parent, root, free_port(), prefix)
    subprocess.run(
        [*prefix, initdb, "-D", str(root / "data"), "-U", "exchange", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    c.start()
    try:
        yield c
    finally:
        subprocess.run(
            [*prefix, str(c.bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate",
             "stop"],
            capture_output=True,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def readyz(url: str) -> tuple[int, dict[str, str]]:
    try:
        r = httpx.get(f"{url}/readyz", timeout=5)
        return r.status_code, r.json()
    except httpx.HTTPError:
        return 0, {}


def test_postgres_crash_under_load_refuses_fast_then_loses_nothing(
    tmp_path: Path, kafka_bootstrap: str, cluster: Cluster
) -> None:
    home = tmp_path / "home"
    db_env = {"EXCHANGE_DATABASE_URL": cluster.url}
    gw = ThreadGateway(
        home, kafka_bootstrap, database_url=cluster.url, idempotency_resolve_after_s=3
    ).start()
    try:
        with gw.admin() as admin:
            s = build(admin, gw.url)
        load = load_for(s, [gw.url], sse=True).start()
        try:
            load.wait_acked(10, 60)
            cluster.crash()
            down_at = time.monotonic()
            noticed = until(lambda: readyz(gw.url)[0] == 503, 20)
            body = readyz(gw.url)[1]
            time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_at)))
            during = dict(load.statuses)
            cluster.start()
            up_at = time.monotonic()
            back = until(lambda: readyz(gw.url)[0] == 200, 60)
            load.wait_acked(len(load.acked) + 10, 90)  # publishing resumed by itself
            load.drain(90)
        finally:
            load.close()
        r = load.report(stall_from=down_at)
        r |= {
            "readyz_noticed_s": round(noticed, 1),
            "readyz_back_s": round(back, 1),
            "down_s": round(up_at - down_at, 1),
        }
        print(f"PostgreSQL crashed under load: {r} readyz while down: {body}")
        s.close()
    finally:
        gw.stop()
    assert body.get("database") == "down" and body.get("kafka") == "up", body
    assert not any(k.startswith("500") for k in r["statuses"]), r
    assert any(k.startswith("503") for k in during), during  # it was refused, not hung
    assert r["slowest_refusal_s"] < 30, r
    assert r["lost"] == 0 and r["stuck_keys"] == 0 and r["unacknowledged_delivered"] == 0, r
    assert r["delivered"] == r["sse_delivered"] == r["records_acknowledged"], r
    code, out = verify(home, kafka_bootstrap, "--source", "kafka", env=db_env)
    assert code == 0, out
