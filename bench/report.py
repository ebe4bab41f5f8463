"""Measure rows, the machine description, and the Markdown table."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

import psutil

from bench.env import KAFKA_CLIENT
from exchange.kafka.jars import KAFKA_VERSION

PACKAGES = (
    "kafka-python",
    "confluent-kafka",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "fastavro",
    "cryptography",
    "sqlalchemy",
    "pydantic",
    "psutil",
    "pyinstrument",
)


def measure(
    name: str,
    unit: str,
    project: float,
    baseline: float | None,
    goal: str,
    *,
    ratio: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One row; ``ratio`` defaults to project / baseline."""
    if ratio is None and baseline:
        ratio = project / baseline
    row: dict[str, Any] = {
        "name": name,
        "unit": unit,
        "project": round(project, 2),
        "baseline": round(baseline, 2) if baseline is not None else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "goal": goal,
    }
    return row | extra


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def machine(kafka_source: str) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu": platform.processor() or platform.machine(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "kafka": KAFKA_VERSION,
        "kafka_source": kafka_source,
        "kafka_client": KAFKA_CLIENT,  # the gateway's
        "packages": versions,
    }


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 10 else f"{v:,.0f}"
    return str(v)


def table(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}, "
        f"Kafka {m['kafka']} ({m['kafka_source']}), kafka-python "
        f"{m['packages'].get('kafka-python')}, mode: {result.get('mode', '?')}",
        "",
        "| measure | unit | project | baseline | ratio | goal | note |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in result["measures"]:
        cells = [r["name"], r.get("unit", ""), r.get("project"), r.get("baseline")]
        cells += [r.get("ratio"), r.get("goal", ""), r.get("note", "")]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"
