"""``python -m bench.run [--quick] --out FILE [--only NAME ...]``: every measure against its
baseline in one run on one broker and one gateway; writes JSON and a Markdown table.

Timings are reported, never asserted: nothing here fails because the machine is slow.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.env import BOOTSTRAP_ENV, Bench, system

# (module, needs the running system?) in run order; delivery reads what publish wrote.
MEASURES: list[tuple[str, bool]] = [
    ("bench_publish", True),
    ("bench_publish_small", True),
    ("bench_delivery", True),
    ("bench_latency", True),
    ("bench_fanout", True),
    ("bench_port", True),  # the Kafka port per backend (no gateway involved)
    ("bench_node", True),  # county node catch-up and RSS
    ("bench_import", True),  # exchange import vs the gateway's publish rate
    ("bench_encryption", False),  # owned by the crypto engineer
    ("bench_audit", False),  # owned by the audit engineer
    ("bench_federation", False),  # two brokers and MirrorMaker 2 of its own
]


def _load(module: str) -> Callable[..., list[dict[str, Any]]] | None:
    try:
        mod = importlib.import_module(f"bench.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"bench.{module}":
            raise
        return None
    fn: Callable[..., list[dict[str, Any]]] = mod.run
    return fn


def _skipped(module: str, why: str) -> dict[str, Any]:
    name = module.removeprefix("bench_")
    return {
        "name": name,
        "unit": "",
        "project": None,
        "baseline": None,
        "ratio": None,
        "goal": "",
        "note": why,
    }


def _run_one(module: str, live: bool, bench: Bench | None, quick: bool) -> list[dict[str, Any]]:
    fn = _load(module)
    if fn is None:
        return [_skipped(module, f"bench/{module}.py not present: skipped")]
    started = time.monotonic()
    print(f"-- {module} ...", file=sys.stderr, flush=True)
    try:
        got = fn(bench) if live else fn(quick)
    except Exception as exc:  # one broken measure must not hide the others
        traceback.print_exc()
        got = [_skipped(module, f"failed: {type(exc).__name__}: {exc}"[:200])]
    print(f"   {module} took {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    return got


def run_all(quick: bool, only: set[str] | None, workdir: Path) -> dict[str, Any]:
    wanted = [(m, live) for m, live in MEASURES if not only or m.removeprefix("bench_") in only]
    rows: list[dict[str, Any]] = []
    source = "external" if os.environ.get(BOOTSTRAP_ENV) else "embedded"
    if any(live for _, live in wanted):
        with system(workdir, quick) as bench:
            for module, live in wanted:
                if live:
                    rows.extend(_run_one(module, live, bench, quick))
    # Offline measures after the gateway is gone, so they do not share the CPU with it.
    for module, live in wanted:
        if not live:
            rows.extend(_run_one(module, live, None, quick))
    return {
        "mode": "quick" if quick else "full",
        "machine": report.machine(source),
        "measures": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run")
    ap.add_argument("--quick", action="store_true", help="smoke scale (under a minute)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/latest.json"))
    ap.add_argument("--only", nargs="*", help="measure names, e.g. publish delivery")
    args = ap.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="exchange-bench-") as tmp:
        result = run_all(args.quick, set(args.only) if args.only else None, Path(tmp))
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    md = report.table(result)
    args.out.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')} in {result['elapsed_s']}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
