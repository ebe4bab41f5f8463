"""Logged tracebacks keep frames and exception types but never messages (issue 12 item 9)."""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path

from exchange import logs

SECRET = "3301-SECRET-VALUE-42"


def _fails() -> None:
    try:
        raise KeyError(SECRET)
    except KeyError as exc:
        raise ValueError(f"record {{'citizen_id': '{SECRET}'}} is invalid") from exc


def test_redacted_traceback_has_frames_and_types_only() -> None:
    try:
        _fails()
    except ValueError as exc:
        text = logs.redacted_traceback(exc)
    assert SECRET not in text
    assert "builtins.ValueError (message withheld)" in text
    assert "builtins.KeyError (message withheld)" in text
    assert "in _fails" in text


def test_every_handler_gets_the_redacted_traceback() -> None:
    logs.install()
    logs.install()  # idempotent
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.unit.gateway.logs")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            _fails()
        except ValueError:
            logger.exception("Exception in ASGI application")
        logger.error("no traceback here")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert SECRET not in out
    assert "Exception in ASGI application" in out and "ValueError (message withheld)" in out
    assert "no traceback here" in out


def test_kafka_client_debug_records_lose_their_arguments() -> None:
    logs.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    kafka_log = logging.getLogger("kafka.producer.kafka")
    kafka_log.addHandler(handler)
    kafka_log.setLevel(logging.DEBUG)
    try:
        kafka_log.debug("Sending (key=%r value=%r)", SECRET.encode(), b"x")
        kafka_log.warning("broker %s unavailable", "node-1")
    finally:
        kafka_log.removeHandler(handler)
        kafka_log.setLevel(logging.NOTSET)
    out = stream.getvalue()
    assert SECRET not in out and "Sending (key=%r value=%r)" in out
    assert "broker node-1 unavailable" in out


_EMIT = (
    "from exchange import logs\n"
    "import logging\n"
    "logs.configure('info', 'auto')\n"
    "logs.REQUEST_ID.set('req-42')\n"
    "logging.getLogger('exchange.access').info('request', extra={'status': 200})\n"
)


def _emit(stderr: int) -> None:
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[3])
    subprocess.run(
        [sys.executable, "-c", _EMIT],
        env={**os.environ, "PYTHONPATH": root},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        check=True,
        timeout=60,
    )


def test_auto_format_is_text_on_a_terminal_and_json_otherwise() -> None:
    """`exchange up` on a terminal prints human lines; piped (a service, a container), JSON."""
    import json
    import pty

    leader, follower = pty.openpty()  # a real terminal device for the child's stderr
    try:
        _emit(follower)
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    line = out.decode().strip()
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO +exchange\.access: request \[req-42\]", line), line

    r, w = os.pipe()
    _emit(w)
    os.close(w)
    with os.fdopen(r) as f:
        body = json.loads(f.read())
    assert body["logger"] == "exchange.access" and body["request_id"] == "req-42"
    assert body["status"] == 200 and body["level"] == "info"
