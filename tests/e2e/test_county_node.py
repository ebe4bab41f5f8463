"""County node store-and-forward (issue 16): a real node subprocess, behind a link proxy that
cuts the uplink, in front of the real gateway and broker.

Arrivals are counted through a subscription at the site: every record exactly once, and in
order per key (each record carries its key's sequence number).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway
from tests.support.linkproxy import LinkProxy
from tests.support.node import (
    READING,
    RSS_CAP,
    NodeProcess,
    assert_exactly_once_in_order,
    creds,
    publish_across_a_cut,
    records,
)
from tests.support.scenario import Scenario, build

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

LONG = os.environ.get("EXCHANGE_LONG_TESTS") == "1"


@pytest.fixture(scope="module")
def s(gateway: ThreadGateway, admin: ExchangeClient) -> Iterator[Scenario]:
    scenario = build(admin, gateway.url, share_type="unconditional", schema=READING, partitions=3)
    yield scenario
    scenario.close()


@pytest.fixture
def link(gateway: ThreadGateway) -> Iterator[LinkProxy]:
    with LinkProxy("127.0.0.1", gateway.port) as proxy:
        yield proxy


def collect(s: Scenario, tag: str, expected: int, timeout: float = 120) -> list[tuple[str, int]]:
    """(key, n) of every record with this tag at the site, in delivery order, waiting until
    ``expected`` have arrived and then a little more (a duplicate would show up)."""
    sub = s.subscriber.subscribe(s.topic, start="earliest")
    got: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout
    quiet_polls = 0
    while time.monotonic() < deadline and (len(got) < expected or quiet_polls < 2):
        page = s.subscriber.poll(sub, max=5000, wait_ms=500)
        mine = [r for r in page["records"] if r["value"]["station"].startswith(f"{tag}-")]
        got += [(r["key"], r["value"]["n"]) for r in mine]
        s.subscriber.commit(sub, page["cursor"])
        quiet_polls = quiet_polls + 1 if not page["records"] else 0
    s.subscriber.call("DELETE", f"/v1/subscriptions/{sub}")
    return got


def start_node(tmp_path: Path, link: LinkProxy, s: Scenario, **config: Any) -> NodeProcess:
    node = NodeProcess(
        tmp_path / "node",
        link.url(),
        creds(s.publisher),
        topics=[s.topic],
        backoff_base_s=0.1,
        backoff_max_s=1.0,
        request_timeout_s=10.0,
        **config,
    )
    return node.start()


@pytest.mark.timeout(1800 if LONG else 300)
def test_records_published_across_an_uplink_cut_arrive_exactly_once_in_order(
    s: Scenario, link: LinkProxy, tmp_path: Path
) -> None:
    total, per_request = (100_000, 1000) if LONG else (5_000, 100)
    cut_s = 60.0 if LONG else 5.0
    tag = uuid.uuid4().hex[:8]
    node = start_node(tmp_path, link, s)
    try:
        status_during = publish_across_a_cut(
            node,
            link,
            s.topic,
            lambda start, n: records(start, n, tag),
            total=total,
            per_request=per_request,
            cut_s=cut_s,
        )
        assert status_during["backlog_records"] > 0
        assert status_during["last_error"] is not None
        assert status_during["oldest_record_age_s"] > 0
        assert status_during["rss_bytes"] <= RSS_CAP  # the backlog is on disk, not in RAM
        st = node.wait_drained(timeout=600 if LONG else 120)
        assert st["forwarded_records"] == total
        assert st["dead_letters"] == 0
        assert st["last_contact_age_s"] is not None
        assert st["rss_bytes"] <= RSS_CAP
        got = collect(s, tag, total, timeout=600 if LONG else 120)
        assert_exactly_once_in_order(got, total, tag)
        cli = node.status_cli()
        assert cli["backlog_records"] == 0
        assert cli["forwarded_records"] == total
    finally:
        node.close()


def test_node_killed_mid_forward_then_restarted_delivers_exactly_once(
    s: Scenario, link: LinkProxy, tmp_path: Path
) -> None:
    total, kills_wanted = 1_500, 2
    tag = uuid.uuid4().hex[:8]
    # small batches and a slow link: a batch is nearly always in flight when the kill lands
    node = start_node(tmp_path, link, s, batch_records=50)
    link.delay(0.05)
    try:
        for start in range(0, total, 500):
            assert node.publish(s.topic, records(start, 500, tag)).status_code == 202
        deadline = time.monotonic() + 120
        kills = 0
        while kills < kills_wanted and time.monotonic() < deadline:
            st = node.status()
            if st["forwarded_records"] >= (kills + 1) * 400:
                node.kill()
                kills += 1
                node.start()
            time.sleep(0.05)
        assert kills == kills_wanted
        link.delay(0)
        node.wait_drained()
        got = collect(s, tag, total)
        assert_exactly_once_in_order(got, total, tag)
    finally:
        node.close()


def test_answers_lost_in_a_blackholed_link_are_learnt_on_retry(
    s: Scenario, link: LinkProxy, tmp_path: Path
) -> None:
    """A link that loses packets instead of refusing: requests and answers vanish mid-way,
    the node times out and retries the same batch; the site answers each batch once."""
    total = 1_000
    tag = uuid.uuid4().hex[:8]
    node = NodeProcess(
        tmp_path / "node",
        link.url(),
        creds(s.publisher),
        topics=[s.topic],
        batch_records=50,
        backoff_base_s=0.1,
        backoff_max_s=1.0,
        request_timeout_s=3.0,
    ).start()
    link.delay(0.05)  # a batch is in flight most of the time
    try:
        assert node.publish(s.topic, records(0, total, tag)).status_code == 202
        deadline = time.monotonic() + 60
        while node.status()["forwarded_records"] < 200:
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.05)
        link.cut(mode="blackhole")
        time.sleep(4)  # longer than the node's request timeout
        assert node.status()["last_error"] is not None
        link.restore()
        link.delay(0)
        node.wait_drained()
        assert_exactly_once_in_order(collect(s, tag, total), total, tag)
    finally:
        node.close()


def test_a_retry_after_a_lost_answer_learns_the_outcome(
    s: Scenario, link: LinkProxy, tmp_path: Path
) -> None:
    """The batch reached the site but the node never heard back (it died): the retry with the
    same Idempotency-Key is answered with the first outcome, nothing is published twice."""
    from node.forward import body_of, idempotency_key
    from node.service import Node
    from node.uplink import Uplink

    tag = uuid.uuid4().hex[:8]
    node = NodeProcess(
        tmp_path / "node", link.url(), creds(s.publisher), topics=[s.topic], batch_records=100
    )
    local = Node(node.home)  # the node's own parts, in this process; not started
    try:
        local.store.append(
            "app",
            s.topic,
            "json",
            '"latest"',
            [json.dumps(r).encode() for r in records(0, 100, tag)],
            idempotency_key=None,
            request_hash="",
            node_id="",
        )
        batch = local.store.next_batch(100, 1 << 22)
        assert batch is not None
        body, ctype = body_of(batch, local.store.payloads(batch))
        import gzip

        first = Uplink(link.url(), creds(s.publisher), timeout=10).publish(
            s.topic,
            gzip.compress(body, mtime=0),
            ctype,
            idempotency_key(local.config.node_id, batch),
        )
        assert first.status == 200  # published; the node "crashes" before recording it
        assert local.store.next_batch(100, 1 << 22) == batch  # still the head, same id
        assert local.forwarder.step() == 0.0
        st = local.status()
        assert st["backlog_records"] == 0
        assert st["replayed_batches"] == 1
        assert_exactly_once_in_order(collect(s, tag, 100), 100, tag)
    finally:
        local.uplink.close()
        local.prefetcher.uplink.close()
        node.close()


def test_subscription_pulled_ahead_is_served_while_the_link_is_cut(
    s: Scenario, link: LinkProxy, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    sub = s.subscriber.subscribe(s.topic, start="latest")
    node = NodeProcess(
        tmp_path / "node",
        link.url(),
        creds(s.subscriber),
        subscriptions=[sub],
        backoff_base_s=0.1,
        backoff_max_s=1.0,
    ).start()
    try:
        time.sleep(0.5)  # the subscription's "latest" is fixed at its first poll
        s.publisher.publish(s.topic, records(0, 300, tag))
        deadline = time.monotonic() + 60
        while node.status()["subscriptions"][sub]["prefetched_records"] < 300:
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.2)
        link.cut()
        page = node.http.get(f"/v1/subscriptions/{sub}/records", params={"max": 200}).json()
        assert len(page["records"]) == 200
        first = page["records"][0]
        assert set(first) >= {"record_id", "key", "value", "partition", "offset", "schema_id"}
        r = node.http.post(f"/v1/subscriptions/{sub}/commit", json={"cursor": page["cursor"]})
        assert r.status_code == 200, r.text
        rest = node.http.get(f"/v1/subscriptions/{sub}/records", params={"max": 500}).json()
        got = page["records"] + rest["records"]
        keyed = [(r["key"], r["value"]["n"]) for r in got]
        assert_exactly_once_in_order(keyed, 300, tag)
        node.http.post(f"/v1/subscriptions/{sub}/commit", json={"cursor": rest["cursor"]})
        empty = node.http.get(f"/v1/subscriptions/{sub}/records", params={"wait_ms": 200}).json()
        assert empty["records"] == []
        # the site link is down: the node says so and keeps serving
        assert node.status()["subscriptions"][sub]["local_backlog"] == 0
        link.restore()
    finally:
        node.close()


def test_disk_full_is_a_clear_refusal_and_loses_nothing(
    s: Scenario, link: LinkProxy, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    link.cut()  # nothing drains: the outbox only fills
    node = start_node(tmp_path, link, s, max_outbox_bytes=256 * 1024)
    try:
        accepted, refusal = 0, None
        for start in range(0, 100_000, 100):
            r = node.publish(s.topic, records(start, 100, tag))
            if r.status_code != 202:
                refusal = r
                break
            accepted += 100
        assert refusal is not None and accepted > 0
        assert refusal.status_code == 507, refusal.text
        assert refusal.json()["code"] == "outbox_full"
        assert refusal.headers["content-type"].startswith("application/problem+json")
        assert refusal.headers["retry-after"]
        assert node.status()["backlog_records"] == accepted  # the refused request: nothing
        link.restore()
        node.wait_drained()
        # room again once forwarded
        assert node.publish(s.topic, records(accepted, 100, tag)).status_code == 202
        node.wait_drained()
        assert_exactly_once_in_order(collect(s, tag, accepted + 100), accepted + 100, tag)
    finally:
        node.close()
