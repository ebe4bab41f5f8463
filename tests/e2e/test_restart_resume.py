"""Against `exchange up`: publish, long-poll, commit, restart, resume at the cursor, stream SSE."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess
from tests.support.scenario import build, grant, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]


def test_pull_resumes_at_committed_cursor_after_restart(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    gw = GatewayProcess(tmp_path / "home", kafka_bootstrap).start()
    try:
        with gw.admin() as admin:
            s = build(admin, gw.url)
        s.publisher.publish(s.topic, [{"key": f"k{i}", "value": person(i)} for i in range(6)])
        grant(s, ["name"])
        sub = s.subscriber.subscribe(s.topic)
        seen: set[str] = set()
        for _ in range(10):  # a page holds what has arrived (maybe one partition's so far)
            page = s.subscriber.poll(sub, max=3 - len(seen), wait_ms=3000)
            if page["records"]:
                s.subscriber.commit(sub, page["cursor"])
            seen |= {r["value"]["name"] for r in page["records"]}
            if len(seen) >= 3:
                break
        assert len(seen) == 3
    finally:
        gw.stop()

    gw = GatewayProcess(tmp_path / "home", kafka_bootstrap, port=gw.port).start()
    try:
        rest: list[dict[str, object]] = []
        for _ in range(10):
            p = s.subscriber.poll(sub, wait_ms=1000)
            rest += p["records"]
            if p["records"]:
                s.subscriber.commit(sub, p["cursor"])
            if len(rest) >= 3:
                break
        names = {r["value"]["name"] for r in rest}  # type: ignore[index]
        assert names.isdisjoint(seen)
        assert seen | names == {f"Resident {i}" for i in range(6)}

        # The same subscription streams over SSE from the committed cursor on.
        streamed: list[str] = []

        def listen() -> None:
            for ev in s.subscriber.stream(sub, timeout=20):
                if ev.get("event") == "record":
                    streamed.append(ev["data"]["value"]["name"])
                if len(streamed) >= 2:
                    return

        t = threading.Thread(target=listen)
        t.start()
        time.sleep(1.0)
        s.publisher.publish(s.topic, [{"key": "k", "value": person(i)} for i in (6, 7)])
        t.join(timeout=20)
        assert streamed == ["Resident 6", "Resident 7"]
    finally:
        s.close()
        gw.stop()
