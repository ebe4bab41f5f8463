"""One log4j2 template for the JVMs the exchange runs: the broker's and MirrorMaker's."""

from __future__ import annotations

import stat
from pathlib import Path

from exchange.kafka import broker, mirror
from exchange.kafka.log4j2 import log4j2_properties, write_log4j2


def parse(text: str) -> dict[str, str]:
    pairs = (line.split(" = ", 1) for line in text.splitlines() if line)
    return {k: v for k, v in pairs}


def loggers(props: dict[str, str]) -> dict[str, str]:
    ids = {k.split(".")[1] for k in props if k.startswith("logger.")}
    return {props[f"logger.{i}.name"]: props[f"logger.{i}.level"] for i in ids}


def test_the_broker_and_mirrormaker_differ_only_in_file_and_loggers(tmp_path: Path) -> None:
    b = parse(log4j2_properties(tmp_path, "server.log", broker.LOGGERS))
    m = parse(log4j2_properties(tmp_path, "mirror.log", mirror.LOGGERS))
    assert b["appender.file.fileName"] == f"{tmp_path}/server.log"
    assert b["appender.file.filePattern"] == f"{tmp_path}/server.log.%i"
    assert m["appender.file.fileName"] == f"{tmp_path}/mirror.log"
    assert loggers(b) == {"kafka": "INFO", "org.apache.kafka": "INFO"}
    assert loggers(m) == {"org.apache.kafka": "INFO", "org.apache.kafka.clients": "WARN"}
    shared = {k for k in b if not k.startswith(("logger.", "appender.file.file"))}
    assert {k: b[k] for k in shared} == {k: m[k] for k in shared}
    assert b["appender.file.policies.size.size"] == "20MB" and b["rootLogger.level"] == "INFO"


def test_written_private(tmp_path: Path) -> None:
    path = write_log4j2(tmp_path / "log4j2.properties", tmp_path / "logs", "x.log", {})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "logger." not in path.read_text()
