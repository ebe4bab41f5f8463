"""The node assembled: its store, uplink, forwarder and prefetcher, and the use cases the local
HTTP face (:mod:`gateway.node_app`) and ``exchange node status`` call."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.errors import InvalidInput, NotFound
from node.atrest import AtRest, FileKey, Plain
from node.config import LocalTokens, NodeConfig, NodeHome
from node.forward import Backoff, Forwarder, Pacer
from node.prefetch import Prefetcher
from node.store import Store
from node.uplink import Uplink


def open_store(home: NodeHome, config: NodeConfig) -> Store:
    at_rest: AtRest = FileKey(home.key()) if config.encrypt_at_rest else Plain()
    return Store(home.database, max_bytes=config.max_outbox_bytes, at_rest=at_rest)


class Node:
    def __init__(self, home: Path) -> None:
        self.home = NodeHome(home)
        self.config = self.home.config()
        self.tokens: LocalTokens = self.home.tokens()
        self.store = open_store(self.home, self.config)
        self.uplink = Uplink(
            self.config.gateway_url,
            self.home.credentials(),
            timeout=self.config.request_timeout_s,
        )
        c = self.config
        self.forwarder = Forwarder(
            self.store,
            self.uplink,
            node_id=c.node_id,
            batch_records=c.batch_records,
            batch_bytes=c.batch_bytes,
            backoff=Backoff(c.backoff_base_s, c.backoff_max_s),
            pacer=Pacer(c.bandwidth_bytes_per_s),
        )
        self.prefetcher = Prefetcher(
            self.store,
            # its own connection: a long poll must not hold up the forwarder's sends
            Uplink(c.gateway_url, self.home.credentials(), timeout=c.request_timeout_s),
            c.subscriptions,
            max_records=c.prefetch_max_records,
            backoff=Backoff(c.backoff_base_s, c.backoff_max_s),
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.store.set_meta(started_at=time.time())
        for name, target in (("forwarder", self.forwarder.run), ("prefetch", self.prefetcher.run)):
            t = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self.forwarder.wake.set()
        for t in self._threads:
            t.join(timeout=max(5.0, self.config.request_timeout_s))
        self.uplink.close()
        self.prefetcher.uplink.close()

    # -- local publish -------------------------------------------------------------------

    def check_topic(self, topic: str) -> None:
        if topic not in self.config.publish_topics:
            # the gateway's answer for a topic one may not publish to, without the probe
            raise NotFound(f"topic {topic} not found")

    def publish(
        self,
        app: str,
        topic: str,
        kind: str,
        version: str,
        payloads: list[bytes],
        *,
        idempotency_key: str | None,
        request_hash: str,
    ) -> tuple[dict[str, Any], bool]:
        answer = self.store.append(
            app, topic, kind, version, payloads,
            idempotency_key=idempotency_key, request_hash=request_hash,
            node_id=self.config.node_id,
        )
        self.forwarder.wake.set()
        return answer

    # -- local subscriptions -------------------------------------------------------------

    def check_subscription(self, sub: str) -> None:
        if sub not in self.config.subscriptions:
            raise NotFound(f"subscription {sub} not found")

    def page(self, sub: str, cursor: str | None, limit: int) -> dict[str, Any] | None:
        """A page from the local copy; None when there is nothing yet (caller may wait)."""
        after = _cursor(cursor) if cursor else self.store.committed(sub)
        rows = self.store.page(sub, after, limit)
        if not rows:
            return None
        return {
            "records": [r for _, r in rows],
            "cursor": _encode(rows[-1][0]),
            "withheld": 0,
        }

    def empty_page(self, sub: str, cursor: str | None) -> dict[str, Any]:
        after = _cursor(cursor) if cursor else self.store.committed(sub)
        return {"records": [], "cursor": _encode(after), "withheld": 0}

    def commit(self, sub: str, cursor: str) -> None:
        seq = _cursor(cursor)
        if seq > self.store.last_seq(sub):
            raise InvalidInput("cursor is ahead of anything this node has served")
        self.store.commit(sub, seq)

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out = status_of(self.store, self.config)
        with contextlib.suppress(OSError):
            out["rss_bytes"] = _rss()
        return out


def status_of(store: Store, config: NodeConfig) -> dict[str, Any]:
    now = time.time()
    b = store.backlog()
    meta = store.meta()
    last_contact = meta.get("last_contact")
    return {
        "node": config.node_id,
        "gateway": config.gateway_url,
        "backlog_records": b.records,
        "backlog_bytes": b.bytes,
        "oldest_record_age_s": None if b.oldest_received_at is None
        else round(now - b.oldest_received_at, 3),
        "batch_in_flight": b.batches > 0,
        "dead_letters": b.dead,
        "forwarded_records": int(meta.get("forwarded_records", 0)),
        "forwarded_batches": int(meta.get("forwarded_batches", 0)),
        "replayed_batches": int(meta.get("replayed_batches", 0)),
        "rejected_records": int(meta.get("rejected_records", 0)),
        "last_contact": _iso(last_contact),
        "last_contact_age_s": None if last_contact is None else round(now - last_contact, 3),
        "last_error": meta.get("last_error"),
        "last_error_at": _iso(meta.get("last_error_at")),
        "last_prefetch_error": meta.get("last_prefetch_error"),
        "outbox_quota_bytes": config.max_outbox_bytes,
        "subscriptions": {
            sub: {
                "local_backlog": store.inbox_backlog(sub),
                "prefetched_records": int(meta.get(f"prefetched_records:{sub}", 0)),
            }
            for sub in config.subscriptions
        },
    }


def metrics_text(status: dict[str, Any]) -> str:
    """The status as Prometheus text exposition."""
    lines = []
    gauges = {
        "exchange_node_backlog_records": status["backlog_records"],
        "exchange_node_backlog_bytes": status["backlog_bytes"],
        "exchange_node_oldest_record_age_seconds": status["oldest_record_age_s"] or 0,
        "exchange_node_dead_letters": status["dead_letters"],
        "exchange_node_forwarded_records_total": status["forwarded_records"],
        "exchange_node_replayed_batches_total": status["replayed_batches"],
        "exchange_node_rejected_records_total": status["rejected_records"],
        "exchange_node_last_contact_age_seconds": status["last_contact_age_s"]
        if status["last_contact_age_s"] is not None else -1,
    }
    if "rss_bytes" in status:
        gauges["exchange_node_rss_bytes"] = status["rss_bytes"]
    for name, value in gauges.items():
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# TYPE {name} {kind}", f"{name} {value}"]
    for sub, s in status["subscriptions"].items():
        lines.append(f'exchange_node_prefetch_backlog_records{{subscription="{sub}"}} '
                     f"{s['local_backlog']}")
    return "\n".join(lines) + "\n"


def _cursor(text: str) -> int:
    if not text.startswith("n") or not text[1:].isdigit() or len(text) > 20:
        raise InvalidInput("cursor is not one this node issued")
    return int(text[1:])


def _encode(seq: int) -> str:
    return f"n{seq}"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import resource

    return pages * resource.getpagesize()
