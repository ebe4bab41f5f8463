"""The background dependency monitor: answers at once, a hung probe counts as down."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from exchange import health
from exchange.db import make_engine
from exchange.health import HealthMonitor, database_writable


def wait_for(cond: object, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_status_follows_the_probes_and_a_hung_probe_is_down_within_the_bound() -> None:
    answer = {"ok": True}
    hang = threading.Event()
    release = threading.Event()

    def flaky() -> bool:
        if hang.is_set():
            release.wait(5)
        return answer["ok"]

    def broken() -> bool:
        raise OSError("refused")

    m = HealthMonitor({"kafka": flaky, "db": broken}, interval_s=0.02, bound_s=0.3)
    assert m.status() == {"kafka": "unknown", "db": "unknown"} and not m.down("kafka")
    m.start()
    try:
        assert wait_for(lambda: m.status() == {"kafka": "up", "db": "down"})
        answer["ok"] = False
        assert wait_for(lambda: m.down("kafka"))
        answer["ok"] = True
        assert wait_for(lambda: not m.down("kafka"))
        hang.set()
        t0 = time.monotonic()
        assert wait_for(lambda: m.down("kafka"))
        assert time.monotonic() - t0 < 0.6  # the bound, not the probe's own timeout
        t0 = time.monotonic()
        m.status()
        assert time.monotonic() - t0 < 0.05  # asking never waits for a probe
        hang.clear()
        release.set()
        assert wait_for(lambda: m.status()["kafka"] == "up")
    finally:
        m.stop()


def test_a_sqlite_database_on_a_full_disk_is_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    try:
        assert database_writable(engine)  # the test machine's disk has room
        # Taking the write lock writes nothing, so only the free space can tell: demand more
        # than any disk here has (the e2e test fills a real tmpfs: test_fault_disk_full).
        monkeypatch.setattr(health, "SQLITE_MIN_FREE_BYTES", 1 << 62)
        assert not database_writable(engine)
    finally:
        engine.dispose()
