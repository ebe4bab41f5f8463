"""The Grafana dashboard and the Prometheus alert rules in deploy/ parse, and every metric
they name is one the gateway exports (a renamed metric would leave a silent panel or an
alert that never fires)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY, generate_latest

import exchange.metrics  # noqa: F401 - defines the families in the process's registry

ROOT = Path(__file__).resolve().parents[3]
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
NAME = re.compile(r"\b(exchange_[a-z_]+)\b")


def exported() -> set[str]:
    text = generate_latest(REGISTRY).decode()
    return set(re.findall(r"^# TYPE (\S+) ", text, re.M))


def family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def dashboard_exprs() -> list[str]:
    dash: dict[str, Any] = json.loads((ROOT / "deploy/grafana/exchange-dashboard.json").read_text())
    assert dash["panels"], "an empty dashboard"
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_every_metric_on_the_dashboard_is_exported() -> None:
    names = {n for e in dashboard_exprs() for n in NAME.findall(e)}
    assert names, "the dashboard names no metric"
    missing = {n for n in names if family(n) not in exported() and n not in exported()}
    assert not missing, missing


def test_every_alert_is_well_formed_and_names_exported_metrics() -> None:
    rules = alert_rules()
    assert {"alert", "expr", "labels", "annotations"} <= set(rules[0])
    names = set()
    for r in rules:
        assert r["labels"]["severity"] in {"warning", "critical"}, r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        found = NAME.findall(r["expr"])
        assert found, f"{r['alert']} names no exchange metric"
        names |= set(found)
    missing = {n for n in names if family(n) not in exported() and n not in exported()}
    assert not missing, missing


def test_the_alerts_cover_what_operators_must_hear_about() -> None:
    exprs = " ".join(r["expr"] for r in alert_rules())
    for must in (
        "exchange_delivery_lag",
        "exchange_webhook_dead_letters",
        "exchange_audit_append_failures",
        'exchange_kms_calls_total{outcome="error"}',
        "exchange_key_expiry_seconds",
        "exchange_certificate_expiry_seconds",
    ):
        assert must in exprs, must
