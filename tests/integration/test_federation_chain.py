"""The whole chain of issue 16: county node -> league site -> MirrorMaker 2 -> region site.

A county node (a real ``exchange node run`` subprocess) publishes through its uplink, a
LinkProxy in front of the league's gateway, which is cut mid-stream and restored; the league
shares the topic to the region (the ``federated_sites`` world, MirrorMaker 2 between two
brokers); a region department reads it under an agreement the league approved for one of the
two sealed fields. Every record must arrive there exactly once, in order per key (each carries
its key's sequence number), with the granted sealed field opened and the other withheld.

Default run: 5,000 records across a 5 s cut. ``EXCHANGE_LONG_TESTS=1``: the issue's 100,000
records across a 60 s cut.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from exchange.client import ExchangeClient
from tests.support.federation import TwoSites, remote_page, wait_topic
from tests.support.gateway import ThreadGateway
from tests.support.linkproxy import LinkProxy
from tests.support.node import (
    KEYS,
    READING,
    NodeProcess,
    assert_exactly_once_in_order,
    creds,
    index_of,
    publish_across_a_cut,
    records,
)
from tests.support.scenario import build

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

LONG = os.environ.get("EXCHANGE_LONG_TESTS") == "1"
# A county reading with two sealed fields: the region is granted ``serial``, not ``memo``.
SCHEMA: dict[str, Any] = READING | {
    "name": "SealedReading",
    "fields": [
        *READING["fields"],
        {"name": "serial", "type": "string", "classification": "sensitive"},
        {"name": "memo", "type": "string", "classification": "sensitive"},
    ],
}


def sealed(i: int) -> dict[str, Any]:
    return {"serial": f"S-{i:07d}", "memo": f"memo {i} (not for the region)"}


def region_arrivals(
    reader: ExchangeClient, topic: str, expected: int, timeout: float
) -> list[dict[str, Any]]:
    """Every record the region serves ``reader``, partition by partition in offset order,
    until ``expected`` have arrived and one more round brought nothing (a duplicate would)."""
    positions: dict[int, int] = {}
    partitions = 1
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    quiet = False
    while not (len(got) >= expected and quiet):
        assert time.monotonic() < deadline, f"{len(got)} of {expected} at the region"
        before = len(got)
        for p in range(partitions):
            page = remote_page(reader, topic, p, positions.get(p, 0))
            partitions = max(partitions, page["partitions"])
            got += page["records"]
            positions[p] = page["next_offset"]
        quiet = len(got) == before
        if quiet and len(got) < expected:
            time.sleep(0.2)
    return got


@pytest.mark.timeout(2400 if LONG else 600)
def test_county_records_reach_a_region_subscriber_once_in_order_with_granted_fields_only(
    federated_sites: TwoSites, admin: ExchangeClient, gateway: ThreadGateway, tmp_path: Path
) -> None:
    total, per_request, cut_s = (100_000, 1000, 60.0) if LONG else (5_000, 100, 5.0)
    world = federated_sites
    s = build(admin, gateway.url, schema=SCHEMA, partitions=3)
    tag = uuid.uuid4().hex[:8]
    try:
        world.share(s.topic)
        # the region delivers only what the agreement grants, unsealed fields too
        reader, _ = world.region_department(s, ["station", "n", "note", "serial"])
        # MirrorMaker restarted on the new share; the topic appears once it copies it
        wait_topic(world.region_bootstrap, world.region_security, s.topic)
        with LinkProxy("127.0.0.1", gateway.port) as uplink:
            node = NodeProcess(
                tmp_path / "node",
                uplink.url(),
                creds(s.publisher),
                topics=[s.topic],
                backoff_base_s=0.1,
                backoff_max_s=1.0,
                request_timeout_s=10.0,
            ).start()
            try:
                during = publish_across_a_cut(
                    node,
                    uplink,
                    s.topic,
                    lambda start, n: records(start, n, tag, sealed),
                    total=total,
                    per_request=per_request,
                    cut_s=cut_s,
                )
                assert during["backlog_records"] > 0 and during["last_error"] is not None
                st = node.wait_drained(timeout=900 if LONG else 120)
                assert st["forwarded_records"] == total and st["dead_letters"] == 0
            finally:
                node.close()
        got = region_arrivals(reader, s.topic, total, timeout=900 if LONG else 120)
        reader.close()
    finally:
        s.close()
    keyed = [(r["key"], r["value"]["n"]) for r in got]
    assert_exactly_once_in_order(keyed, total, tag)
    for r in got:
        i = index_of(r["key"], r["value"]["n"])
        assert r["value"] == {
            "station": r["key"],
            "n": i // KEYS,
            "note": "x" * 40,
            "serial": sealed(i)["serial"],  # granted: opened with the key the league released
        }, r
        assert r["withheld"] == {"memo": "not_granted"}, r
