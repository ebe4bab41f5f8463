"""A subscriber's cursor survives a gateway restart: nothing lost, nothing skipped."""

from __future__ import annotations

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
        page = s.subscriber.poll(sub, max=3, wait_ms=3000)
        assert len(page["records"]) == 3
        s.subscriber.commit(sub, page["cursor"])
        seen = {r["value"]["name"] for r in page["records"]}
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
    finally:
        s.close()
        gw.stop()
