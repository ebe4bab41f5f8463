"""The publish benchmark runs end to end at a handful of records. Asserts the shape of the
measure only: benchmarks report times, tests never assert them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_publish
from bench.env import Bench, Broker, Gateway
from tests.support.kafka import security_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_quick_publish_measure_is_well_formed(kafka_bootstrap: str, tmp_path: Path) -> None:
    security = security_for(kafka_bootstrap)
    gateway = Gateway(tmp_path / "gw", kafka_bootstrap, security=security).start()
    try:
        bench = Bench(Broker(kafka_bootstrap, None, security), gateway, gateway.admin(), quick=True)
        row = bench_publish.measure_publish(bench, 20, threads=2, batch=10)
    finally:
        gateway.stop()
    assert row["name"] == "publish"
    assert row["unit"] == "records/s"
    assert {"project", "baseline", "baseline_kafka_python", "ratio", "goal"} <= row.keys()
    assert row["project"] > 0 and row["baseline"] > 0 and row["ratio"] > 0
    assert row["baseline_kafka_python"] > 0
    assert bench.shared["publish_count"] == 30  # 20 measured + one warm-up batch of 10
