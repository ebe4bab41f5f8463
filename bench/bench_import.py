"""Import: rows/s of ``exchange import`` on a generated 12-column CSV (3 sensitive columns)
vs the gateway's own publish rate for the same records in the same run, and the import's
peak RSS (memory must stay flat in the file size).

Project: the CLI in a subprocess (read, detect, convert, Avro-encode, batches of 500, 4 in
flight, checkpoint after each) — its own rate over the publishing phase. Baseline: 4 HTTP
clients posting pre-encoded JSON batches of 500 of the same records (``bench_publish``'s
method) to the same topic. Both go through the gateway with the department's own client.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from bench.bench_publish import publish_http
from bench.env import Bench
from bench.report import measure
from ingest.detect import resident_id_check

BATCH = 500
WORKERS = 4
HEADER = [
    "seq", "name", "id_number", "mobile", "district", "street_no",
    "age", "income", "approved", "program", "period", "note",
]  # fmt: skip


def scale(quick: bool) -> tuple[int, int]:
    """(rows imported, rows of the publish baseline)."""
    return (5_000, 5_000) if quick else (1_000_000, 100_000)


def values(i: int) -> dict[str, Any]:
    first = f"999999{1970 + i % 30}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
    return {
        "seq": i + 1,
        "name": f"测试{i}",
        "id_number": first + resident_id_check(first),
        "mobile": f"139{i % 100_000_000:08d}",
        "district": ("Xihu", "Binjiang", "Gongshu")[i % 3],
        "street_no": i % 500,
        "age": 18 + i % 70,
        "income": 40_000 + i % 90_000,
        "approved": i % 2 == 0,
        "program": "housing",
        "period": f"2026-{1 + i % 12:02d}",
        "note": f"row {i}",
    }


def write_csv(path: Path, rows: int, start: int = 0) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(start, start + rows):
            v = values(i)
            w.writerow([str(v[h]).lower() if isinstance(v[h], bool) else v[h] for h in HEADER])


def _client(b: Bench, dept: str) -> dict[str, str]:
    b.admin.call("POST", "/v1/departments", json={"id": dept, "name": dept, "level": "county"})
    roles = ["publisher", "steward", "registry:write", "registry:read"]
    body: dict[str, str] = b.admin.call(
        "POST", f"/v1/departments/{dept}/clients", json={"name": "import", "roles": roles}
    )
    return body


def run_import(
    b: Bench, env: dict[str, str], path: Path, topic: str
) -> tuple[dict[str, Any], float]:
    """The CLI on ``path``; returns its JSON summary and its peak RSS in MiB."""
    args = [sys.executable, "-m", "cli.main", "import", str(path), "--topic", topic, "--yes"]
    args += ["--batch-size", str(BATCH), "--workers", str(WORKERS), "-o", "json"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0
    watch = psutil.Process(proc.pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, watch.memory_info().rss)
            except psutil.Error:
                return
            stop.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"import failed ({proc.returncode}): {err.decode()[-500:]}")
    summary: dict[str, Any] = json.loads(out)
    return summary, peak / 2**20


def measure_import(b: Bench, rows: int, baseline_rows: int) -> list[dict[str, Any]]:
    dept = f"imp-{uuid.uuid4().hex[:6]}"
    creds = _client(b, dept)
    topic = f"{dept}.benefits"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_")}
    env |= {
        "EXCHANGE_URL": b.gateway.url,
        "EXCHANGE_CLIENT_ID": creds["client_id"],
        "EXCHANGE_CLIENT_SECRET": creds["client_secret"],
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        warm = Path(tmp) / "warm.csv"  # creates schema and topic, warms DEKs and producer
        write_csv(warm, BATCH, start=10_000_000)
        run_import(b, env, warm, topic)

        from exchange.client import ExchangeClient

        with ExchangeClient(b.gateway.url, creds["client_id"], creds["client_secret"]) as c:
            token = c.token()
        bodies = [
            json.dumps(
                {
                    "records": [
                        {"value": values(i)} for i in range(s, min(baseline_rows, s + BATCH))
                    ]
                },
                ensure_ascii=False,
            ).encode()
            for s in range(0, baseline_rows, BATCH)
        ]
        publish_s = publish_http(b.gateway.url, token, topic, bodies, WORKERS)
        del bodies

        big = Path(tmp) / "big.csv"
        write_csv(big, rows, start=20_000_000)
        size_mib = big.stat().st_size / 2**20
        started = time.perf_counter()
        summary, rss = run_import(b, env, big, topic)
        wall = time.perf_counter() - started
    if summary["published"] != rows:
        raise RuntimeError(f"import published {summary['published']} of {rows}")
    publish_rate = baseline_rows / publish_s
    return [
        measure(
            "import",
            "rows/s",
            summary["rows_per_second"],
            publish_rate,
            ">= 0.8x",
            wall_s=round(wall, 1),
            note=f"{rows:,} rows x 12 columns ({size_mib:.0f} MiB CSV), 3 sealed; batches of "
            f"{BATCH}, {WORKERS} in flight; baseline: gateway JSON publish of {baseline_rows:,} "
            "of the same records, 4 clients",
        ),
        measure(
            "import_rss_mib",
            "MiB",
            rss,
            None,
            "flat in file size",
            note=f"peak RSS of the import process over a {size_mib:.0f} MiB file",
        ),
    ]


def run(b: Bench) -> list[dict[str, Any]]:
    return measure_import(b, *scale(b.quick))
