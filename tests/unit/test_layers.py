"""The house's dependency direction, checked on the source (README "Architecture"):
cli → gateway → dataplane → schemas/consent/audit → exchange (core); node and ingest are
clients of the gateway's public API; only gateway/ speaks HTTP-server; only exchange/kafka/
holds a Kafka client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = {"schemas", "consent", "audit"}
UPPER = {"dataplane", "gateway", "cli", "node", "ingest"}
# package -> top-level packages of this repo it must never import
FORBIDDEN: dict[str, set[str]] = {
    "exchange": DOMAIN | UPPER,
    "schemas": UPPER,
    "consent": UPPER,
    "audit": UPPER,
    "dataplane": {"gateway", "cli", "node", "ingest"},
    "node": {"gateway", "cli", "dataplane", "ingest"},
    "ingest": {"gateway", "cli", "dataplane", "node"},
    "gateway": {"cli"},
}
HTTP_SERVER = {"fastapi", "starlette", "uvicorn", "sse_starlette"}
KAFKA_CLIENTS = {"kafka", "confluent_kafka"}


def imports(path: Path) -> set[str]:
    """Top-level module names a file imports (anywhere in it, lazily or not)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def sources(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_nothing_imports_upward(package: str) -> None:
    bad = {
        f"{p.relative_to(ROOT)} imports {sorted(imports(p) & FORBIDDEN[package])}"
        for p in sources(package)
        if imports(p) & FORBIDDEN[package]
    }
    assert not bad, sorted(bad)


@pytest.mark.parametrize("package", sorted(set(FORBIDDEN) - {"gateway"}))
def test_only_the_gateway_is_an_http_server(package: str) -> None:
    bad = [str(p.relative_to(ROOT)) for p in sources(package) if imports(p) & HTTP_SERVER]
    assert not bad, bad


def test_kafka_clients_live_in_exchange_kafka_only() -> None:
    kafka_dir = ROOT / "exchange" / "kafka"
    bad = [
        str(p.relative_to(ROOT))
        for package in [*FORBIDDEN, "cli"]
        for p in sources(package)
        if imports(p) & KAFKA_CLIENTS and kafka_dir not in p.parents
    ]
    assert not bad, bad
