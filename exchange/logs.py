"""No record value, token or secret reaches a log (issue 12 item 9): the process's log policy.

An exception's message is request-derived data more often than not: an Avro library quoting
the record it refused, a decoder quoting the input, a driver quoting a bound parameter. Any
of those escaping as a 500 used to reach the server log inside uvicorn's "Exception in ASGI
application" traceback. Rather than trusting every library's messages, every log record's
traceback is rendered here with exception types and frames only, for every logger and
handler in the process (a log-record factory, so handlers configured later by uvicorn are
covered too). Our own log calls pass codes and type names, never values.

The Kafka client logs whole produce and fetch requests (record keys and values) below
WARNING: those records keep their message template but lose its arguments.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import traceback
from types import TracebackType
from typing import Any, Literal

# The id of the HTTP request being served (gateway.observe sets it); on every log record.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
_MAX_CHAIN = 16


def redacted_traceback(exc: BaseException) -> str:
    """Frames and exception types of ``exc`` and its causes/contexts; no messages, no locals."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen and len(chain) < _MAX_CHAIN:
        chain.append(cur)
        seen.add(id(cur))
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    parts: list[str] = []
    for e in reversed(chain):
        if parts:
            parts.append("\nwhich led to:\n")
        parts.append("Traceback (most recent call last):\n")
        for frame in traceback.extract_tb(e.__traceback__):
            parts.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}\n')
        parts.append(f"{type(e).__module__}.{type(e).__qualname__} (message withheld)\n")
    return "".join(parts).rstrip("\n")


def _is_kafka_chatter(record: logging.LogRecord) -> bool:
    return record.levelno < logging.WARNING and (
        record.name == "kafka" or record.name.startswith("kafka.")
    )


def _redact(record: logging.LogRecord) -> logging.LogRecord:
    record.request_id = REQUEST_ID.get()
    if record.args and _is_kafka_chatter(record):
        record.args = ()  # the template stays; "%r" placeholders are printed as they are
    info = record.exc_info
    if info and info[1] is not None:
        # Formatters append a preset exc_text; without exc_info no handler can render the
        # original exception (with its message) itself.
        record.exc_text = redacted_traceback(info[1])
        record.exc_info = None
    return record


_installed = False


def install() -> None:
    """Once per process: every log record created from now on has its traceback redacted."""
    global _installed
    if _installed:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _redact(make(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True


# Attributes every LogRecord has: anything else on a record was passed as ``extra``.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            body["request_id"] = rid
        for k, v in vars(record).items():
            if k not in _STANDARD and not k.startswith("_"):
                body[k] = v if isinstance(v, str | int | float | bool | None) else str(v)
        if record.exc_text:
            body["exc"] = record.exc_text
        return json.dumps(body, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [{rid}]" if rid else line


LogFormat = Literal["auto", "json", "text"]


def configure(level: str = "info", fmt: LogFormat = "auto") -> None:
    """The process's logging: one handler on stderr, JSON unless ``text`` (or ``auto`` on a
    terminal), every record redacted (:func:`install`)."""
    install()
    human = fmt == "text" or (fmt == "auto" and sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(HumanFormatter() if human else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter stays at warning; the Kafka clients log record data below it.
    for name in ("kafka", "confluent_kafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
