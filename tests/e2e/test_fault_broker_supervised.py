"""`exchange up` supervises its embedded broker: SIGKILLed while clients publish (with
Idempotency-Keys, retrying) and consume (long-poll and SSE) continuously, the broker is
restarted on the same address without anyone running `exchange kafka start`; /readyz says so
meanwhile, /metrics counts the Kafka client errors, the log says what happened, and
publishing and delivery resume on their own: nothing acknowledged lost, no key stuck, and
`exchange audit verify --source kafka` passes. ``EXCHANGE_LONG_TESTS=1``: two kills."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from exchange.kafka.broker import free_port, pid_alive
from tests.support.gateway import GatewayProcess
from tests.support.load import load_for
from tests.support.scenario import build

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

LONG = os.environ.get("EXCHANGE_LONG_TESTS") == "1"
KILLS = 2 if LONG else 1


def until(cond: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(0.2)
    return time.monotonic() - t0


def readyz(url: str) -> dict[str, str]:
    try:
        body: dict[str, str] = httpx.get(f"{url}/readyz", timeout=5).json()
        return body
    except httpx.HTTPError:
        return {}


def metric(port: int, name: str) -> float:
    """Sum of a metric's samples on the gateway's /metrics listener."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return sum(
        float(ln.rsplit(" ", 1)[1])
        for ln in text.splitlines()
        if ln.startswith((name + "{", name + " "))
    )


def verify_home(home: Path) -> tuple[int, str]:
    """`exchange audit verify --source kafka` against the home's own (supervised) broker."""
    env = {"EXCHANGE_HOME": str(home), "EXCHANGE_KAFKA_BOOTSTRAP": ""}
    result = CliRunner().invoke(
        app, ["audit", "verify", "--offline", "--home", str(home), "--source", "kafka"], env=env
    )
    return result.exit_code, result.output


def test_broker_sigkilled_under_up_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    home = tmp_path / "home"
    mport = free_port()
    env = {"EXCHANGE_METRICS_PORT": str(mport), "EXCHANGE_IDEMPOTENCY_RESOLVE_AFTER_S": "3"}
    gw = GatewayProcess(home, bootstrap=None, extra_env=env).start()
    try:
        with gw.admin() as admin:
            s = build(admin, gw.url)
        load = load_for(s, [gw.url], sse=True).start()
        try:
            seen: set[str] = set()
            timings: list[str] = []
            kills: list[float] = []
            errors_before = metric(mport, "exchange_kafka_errors_total")
            for _ in range(KILLS):
                load.wait_acked(len(load.acked) + 10, 90)
                before = json.loads((home / "kafka" / "state.json").read_text())
                os.kill(before["pid"], signal.SIGKILL)
                kills.append(time.monotonic())

                def back() -> bool:
                    body = readyz(gw.url)
                    seen.add(body.get("broker", "?"))
                    return body.get("status") == "ready"

                down_after = until(lambda: not back(), 30)  # noticed: broker restarting
                ready_after = until(back, 150)
                after = json.loads((home / "kafka" / "state.json").read_text())
                assert after["pid"] != before["pid"] and pid_alive(after["pid"])
                assert after["broker_port"] == before["broker_port"]  # same address
                acked = len(load.acked)
                load.wait_acked(acked + 5, 90)  # publishing resumed with no operator
                timings.append(
                    f"readyz 503 after {down_after:.1f}s, ready {down_after + ready_after:.1f}s, "
                    f"publishing {time.monotonic() - kills[-1]:.1f}s after the kill"
                )
            errors = metric(mport, "exchange_kafka_errors_total") - errors_before
            load.drain(90)
        finally:
            load.close()
        r = load.report(stall_from=kills[0])
        log = (home / "gateway.log").read_text()
        assert "Kafka broker (pid" in log and "killed by SIGKILL" in log
        assert "Kafka broker restarted" in log
        print(
            f"broker SIGKILL x{KILLS} under `exchange up` with load: {'; '.join(timings)}; "
            f"readyz broker states seen {sorted(seen)}; Kafka client errors counted {errors:.0f}; "
            f"{r}"
        )
        s.close()
        code, out = verify_home(home)  # while `exchange up` (and so its broker) still runs
    finally:
        gw.stop()
    assert "restarting" in seen or "up" in seen, seen
    assert errors > 0  # the outage shows on /metrics, not only in /readyz
    assert not any(k.startswith("500") for k in r["statuses"]), r
    assert r["lost"] == 0 and r["stuck_keys"] == 0 and r["unacknowledged_delivered"] == 0, r
    assert r["delivered"] == r["sse_delivered"] == r["records_acknowledged"], r
    assert code == 0, out
