"""The control-plane disk fills while clients publish and consume continuously.

A real full disk: the gateway's SQLite database (control plane, idempotency keys, audit
index) lives on a small tmpfs that a filler file then fills to the last byte (ENOSPC), no
quota emulation. Publishes must be refused at once with a clear 503/507 problem (never a 500,
never a hang), ``/readyz`` must say so, and once space returns every key the clients kept
retrying must end answered: nothing acknowledged lost, no key stuck, the audit log verifies
from Kafka. Skipped, with the reason, where mounting a tmpfs is not permitted."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_fault_open_transaction import until
from tests.integration.test_audit_tamper import verify
from tests.support.gateway import GatewayProcess
from tests.support.load import load_for
from tests.support.scenario import build

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

LONG = os.environ.get("EXCHANGE_LONG_TESTS") == "1"
FULL_FOR_S = 30.0 if LONG else 6.0  # how long the disk stays full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "cp"
    where.mkdir()
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        pytest.skip("cannot mount a small tmpfs here: no mount(8)")
    if r.returncode != 0:  # not root, or a container without CAP_SYS_ADMIN
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(where: Path) -> Path:
    """Write one file until the filesystem refuses a single byte more."""
    filler = where / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    f.write(b"\0" * chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    return filler


def ready(url: str) -> int:
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_disk_full_refuses_fast_loses_nothing_and_resumes(
    tmp_path: Path, kafka_bootstrap: str, small_disk: Path
) -> None:
    home = tmp_path / "home"
    db_env = {"EXCHANGE_DATABASE_URL": f"sqlite:///{small_disk / 'exchange.db'}"}
    env = {**db_env, "EXCHANGE_IDEMPOTENCY_RESOLVE_AFTER_S": "3"}
    gw = GatewayProcess(home, kafka_bootstrap, extra_env=env).start()
    try:
        with gw.admin() as admin:
            s = build(admin, gw.url)
        load = load_for(s, [gw.url]).start()
        try:
            load.wait_acked(20, 60)
            before = len(load.acked)
            filler = fill(small_disk)
            full_at = time.monotonic()
            noticed = until(lambda: ready(gw.url) == 503, 20)
            body = httpx.get(f"{gw.url}/readyz", timeout=5).json()
            time.sleep(FULL_FOR_S)
            during = len(load.acked) - before
            filler.unlink()  # space returns
            freed_at = time.monotonic()
            back = until(lambda: ready(gw.url) == 200, 30)
            load.wait_acked(len(load.acked) + 20, 60)  # publishing resumed
            load.drain(60)
        finally:
            load.close()
        r = load.report(stall_from=full_at)
        r |= {
            "readyz_noticed_s": round(noticed, 1),
            "readyz_back_s": round(back, 1),
            "acked_while_full": during,
            "full_s": round(freed_at - full_at, 1),
        }
        print(f"disk full: {r} readyz while full: {body}")
        s.close()
    finally:
        gw.stop()
    assert body.get("database") != "up", body
    assert not any(k.startswith("500") for k in r["statuses"]), r
    assert any(k.startswith(("503", "507")) for k in r["statuses"]), r  # it was refused
    assert r["slowest_refusal_s"] < 30, r  # answered, not hung
    assert r["lost"] == 0 and r["stuck_keys"] == 0 and r["unacknowledged_delivered"] == 0, r
    code, out = verify(home, kafka_bootstrap, "--source", "kafka", env=db_env)
    assert code == 0, out
