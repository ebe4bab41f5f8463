"""Audit log: batched append throughput and full verification time.

``audit_append``: events/s through :class:`audit.store.AuditLog` (canonical JSON, keyed
subject hashes, leaf hash, SQLite index, Kafka acks=all), 500 events per ``append_many``;
baseline: the bare durable Kafka write of the same bytes in the same batches (no index, no
hashing). ``audit_append_concurrent``: 32 threads each appending single events, which the
log group-commits. ``audit_verify_1m_s``: seconds for ``exchange audit verify --source db``
work (read every row, parse, check links/columns/leaf hashes, recompute the tree, check each
checkpoint) on 1,000,000 events — in two processes, each checking half the index
(``audit.parallel``, from 200,000 events); quick mode verifies 10,000 in one pass and
extrapolates linearly (so it shows the one-pass cost), and says so. Baseline: bare RFC 9162
root over the same entries. Goals: issue 11's (20,000 events/s, 10 s).
Run: ``python -m bench.bench_audit [--quick]`` (``EXCHANGE_BENCH_KAFKA_BOOTSTRAP`` reuses a
broker, else one is started).
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from audit.factory import open_audit
from audit.merkle import root_of
from audit.settings import AuditSettings
from audit.sources import db_entries
from bench.env import Broker
from bench.report import measure
from exchange.auditing import AuditRecord
from exchange.db import make_engine, migrate, session_factory
from exchange.kafka import open_kafka
from exchange.kafka.port import OutRecord
from exchange.settings import Settings

BATCH = 500
MILLION = 1_000_000


def _record(i: int) -> AuditRecord:
    return AuditRecord(
        "records.delivered",
        actor=f"client-{i % 50}",
        department=f"dept-{i % 7}",
        topic="health.visits",
        data={
            "subscription": f"sub-{i % 40}",
            "agreement": f"ag-{i % 11}",
            "offsets": {"0": [i, i + 20]},
            "count": 20,
            "fields": ["citizen_id", "district", "name"],
        },
        subjects=(f"33010{i:013d}", f"33010{i + 1:013d}"),
    )


def _append(workdir: Path, broker: Broker, n: int) -> tuple[float, float, float]:
    bootstrap = broker.bootstrap
    settings = Settings(
        home=workdir / "append", kafka_bootstrap=bootstrap, **broker.security.settings_values()
    )
    settings.resolved_home.mkdir(parents=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    kafka = open_kafka(bootstrap, "bench-audit", security=broker.security)
    topic = f"_exchange.audit.bench-{uuid.uuid4().hex[:8]}"
    audit = open_audit(settings, session_factory(engine), kafka, AuditSettings(topic=topic))
    records = [_record(i) for i in range(n)]
    started = time.perf_counter()
    for k in range(0, n, BATCH):
        audit.log.append_many(records[k : k + BATCH])
    project = n / (time.perf_counter() - started)

    # Bare durable Kafka writes of the same entry bytes, same batch size.
    raw_topic = f"{topic}.raw"
    kafka.ensure_topic(raw_topic, 1)
    values = [OutRecord(None, b"x" * 520) for _ in range(n)]
    started = time.perf_counter()
    for k in range(0, n, BATCH):
        kafka.send_many_durably(raw_topic, values[k : k + BATCH])
    baseline = n / (time.perf_counter() - started)

    threads, per = 32, max(20, n // 320)
    started = time.perf_counter()
    workers = [
        threading.Thread(target=lambda: [audit.log.append(_record(j)) for j in range(per)])
        for _ in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    concurrent = threads * per / (time.perf_counter() - started)
    kafka.close()
    engine.dispose()
    return project, baseline, concurrent


def _verify(workdir: Path, n: int) -> tuple[float, float]:
    settings = Settings(home=workdir / "verify")
    settings.resolved_home.mkdir(parents=True)
    engine = make_engine(settings.sqlalchemy_url)
    migrate(engine)
    audit = open_audit(settings, session_factory(engine), None)
    for k in range(0, n, 5000):
        audit.log.append_many([_record(i) for i in range(k, min(n, k + 5000))])
        if (k // 5000) % 20 == 19:
            audit.service.checkpoint()
    audit.service.checkpoint()
    started = time.perf_counter()
    report = audit.service.verify("db")
    project = time.perf_counter() - started
    assert report.ok and report.size == n, report.line()
    entries = [e.entry for e in db_entries(audit.log.sessions)]
    started = time.perf_counter()
    root_of(audit.log.h, (audit.log.h.leaf(e) for e in entries))
    baseline = time.perf_counter() - started
    engine.dispose()
    return project, baseline


def run(quick: bool) -> list[dict[str, Any]]:
    n_append = 5_000 if quick else 50_000
    n_verify = 10_000 if quick else MILLION
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        workdir = Path(tmp)
        broker = Broker.start(workdir)
        try:
            project, baseline, concurrent = _append(workdir, broker, n_append)
        finally:
            broker.stop()
        verify_s, root_s = _verify(workdir, n_verify)
    scale = MILLION / n_verify
    note = f"n={n_verify}" + (f", extrapolated x{scale:.0f} (quick mode)" if scale > 1 else "")
    return [
        measure(
            "audit_append",
            "events/s",
            project,
            baseline,
            ">= 20000 events/s",
            note=f"batches of {BATCH}, n={n_append}; baseline: bare acks=all Kafka writes",
        ),
        measure(
            "audit_append_concurrent",
            "events/s",
            concurrent,
            None,
            ">= 1000 events/s",
            note="32 threads, single appends, group-committed",
        ),
        measure(
            "audit_verify_1m_s",
            "s",
            verify_s * scale,
            root_s * scale,
            "<= 10 s",
            note=f"{note}; baseline: bare RFC 9162 root over the same entries",
        ),
    ]


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
