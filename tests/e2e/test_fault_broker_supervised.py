"""`exchange up` supervises its embedded broker: SIGKILLed, the broker is restarted on the
same address without anyone running `exchange kafka start`; /readyz says so meanwhile, the
log says what happened, and publishing resumes on its own."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from exchange.kafka.broker import pid_alive
from tests.support.gateway import GatewayProcess
from tests.support.scenario import build, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


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


def test_broker_sigkilled_under_up_is_restarted_and_publishing_resumes(tmp_path: Path) -> None:
    home = tmp_path / "home"
    gw = GatewayProcess(home, bootstrap=None).start()
    try:
        with gw.admin() as admin:
            s = build(admin, gw.url, partitions=1)
        s.publisher.publish(s.topic, [{"key": "before", "value": person(1)}])
        before = json.loads((home / "kafka" / "state.json").read_text())
        os.kill(before["pid"], signal.SIGKILL)
        killed = time.monotonic()
        seen: set[str] = set()

        def back() -> bool:
            body = readyz(gw.url)
            seen.add(body.get("broker", "?"))
            return body.get("status") == "ready"

        down_after = until(lambda: not back(), 30)  # noticed: Kafka down / broker restarting
        ready_after = until(back, 120)
        assert "restarting" in seen or "up" in seen, seen
        after = json.loads((home / "kafka" / "state.json").read_text())
        assert after["pid"] != before["pid"] and pid_alive(after["pid"])
        assert after["broker_port"] == before["broker_port"]  # clients keep their address

        def published() -> bool:
            r = s.publisher.request(
                "POST",
                f"/v1/topics/{s.topic}/records",
                json={"records": [{"key": "after", "value": person(2)}]},
            )
            return r.status_code == 200

        until(published, 60)
        resumed = time.monotonic() - killed
        log = (home / "gateway.log").read_text()
        assert "Kafka broker (pid" in log and "killed by SIGKILL" in log
        assert "Kafka broker restarted" in log
        print(
            f"broker SIGKILL under `exchange up`: readyz 503 after {down_after:.1f}s, ready again "
            f"{down_after + ready_after:.1f}s, publishing "
            f"again {resumed:.1f}s after the kill (readyz broker states seen: {sorted(seen)})"
        )
        s.close()
    finally:
        gw.stop()
