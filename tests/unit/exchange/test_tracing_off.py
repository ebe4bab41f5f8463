"""Tracing off (the default) costs nothing: the OpenTelemetry SDK and exporter are never
imported (FastAPI itself imports the small OpenTelemetry API when it is installed), and a
span is one shared no-op context manager."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from exchange import tracing

ROOT = Path(__file__).resolve().parents[3]


def test_no_sdk_is_imported_when_off() -> None:
    code = (
        "import sys, gateway.app, cli.main, dataplane.publish\n"
        "from exchange import tracing\n"
        "with tracing.span('x', a=1): pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_span_when_off_is_the_shared_no_op() -> None:
    assert not tracing.enabled()
    assert tracing.span("a") is tracing.span("b", topic="t")
    with tracing.span("a") as sp:
        assert sp is None
