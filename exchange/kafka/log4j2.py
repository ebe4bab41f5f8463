"""The log4j2 configuration of the JVMs the exchange runs (the broker, MirrorMaker 2).

Both write one size-rolled file in their own ``logs`` directory; they differ only in the file's
name and in which loggers are turned down. Only this module knows the format."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from exchange.kafka.security import write_private

_TEMPLATE = """status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {logs}/{name}
appender.file.filePattern = {logs}/{name}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 20MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
"""


def log4j2_properties(logs: Path, name: str, loggers: Mapping[str, str]) -> str:
    """One rolling file ``logs/name`` (20 MB, 3 kept); ``loggers``: logger name -> level."""
    text = _TEMPLATE.format(logs=logs, name=name)
    for logger, level in loggers.items():
        key = logger.replace(".", "_")  # a properties key part cannot hold dots
        text += f"logger.{key}.name = {logger}\nlogger.{key}.level = {level}\n"
    return text


def write_log4j2(path: Path, logs: Path, name: str, loggers: Mapping[str, str]) -> Path:
    """Write the configuration to ``path`` (0600, like every file of the JVM)."""
    write_private(path, log4j2_properties(logs, name, loggers))
    return path
