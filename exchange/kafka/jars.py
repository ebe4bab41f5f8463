"""Fetch the official Apache Kafka broker jars from Maven Central into a user cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from exchange.errors import ConfigurationError

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"

# The kafka_2.13 POM carries no SLF4J binding; log4j-slf4j-impl routes the broker's logs to
# log4j2, which we configure to write a file in EXCHANGE_HOME.
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>exchange.local</groupId><artifactId>kafka-runtime</artifactId>
  <version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def cache_root() -> Path:
    if explicit := os.environ.get("EXCHANGE_CACHE"):
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "exchange"


def lib_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}" / "lib"


# MirrorMaker 2 (Kafka Connect's mirror connectors and their runtime) of the same release, in
# a directory of its own: connect-runtime brings Jetty/Jersey the broker does not need.
_MIRROR_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>exchange.local</groupId><artifactId>mirror-runtime</artifactId>
  <version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-mirror</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>connect-mirror-client</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def mirror_lib_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}" / "mirror"


def ensure_mirror_jars(version: str = KAFKA_VERSION) -> Path:
    """Return the directory of MirrorMaker 2 jars (connect-mirror of the broker's release)."""
    return _ensure(mirror_lib_dir(version), _MIRROR_POM, "connect-mirror-*.jar", version)


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return the directory of broker jars, fetching them with Maven once."""
    return _ensure(lib_dir(version), _POM, "kafka_2.13-*.jar", version)


def _ensure(target: Path, pom_text: str, marker: str, version: str) -> Path:
    if (target / ".complete").exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ConfigurationError("Maven (mvn) is not installed: cannot fetch the Kafka jars")
    staging = target.with_name(f"{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(pom_text.format(kafka=version, log4j=LOG4J_VERSION))
        proc = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0 or not any(staging.glob(marker)):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise ConfigurationError(f"fetching {marker} with Maven failed: " + " | ".join(tail))
    (staging / ".complete").write_text(version)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
