"""Apache Kafka MirrorMaker 2 between two sites: its configuration, its process, its ACLs, lag.

MirrorMaker 2 runs at the *receiving* site as a dedicated process
(``org.apache.kafka.connect.mirror.MirrorMaker``) with one enabled flow ``owner->here``:

- topics keep their names (``IdentityReplicationPolicy``): topic names are
  ``<department>.<dataset>`` and departments are unique across the government, so a prefix
  would only make every consumer of a mirrored topic special. The price: the policy cannot
  detect cycles, so a topic is replicated in one direction only (the owner's);
- consumer-offset sync and checkpoints are off (each site keeps its own cursors), ACL sync is
  off (each site decides its own access);
- at the owner's broker MirrorMaker authenticates as a dedicated SCRAM user that may only
  read (and describe) the shared topics: :func:`grant_mirror_reader`;
- at the receiving broker it uses that site's own exchange principal (it is a part of that
  site's exchange, like its gateway), and keeps the Connect internal topics there
  (offset syncs too: ``offset-syncs.topic.location=target``).

MirrorMaker copies record bytes: sealed fields stay sealed on the remote cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from exchange.errors import ConfigurationError, KafkaUnavailable, NotFound
from exchange.kafka.log4j2 import write_log4j2
from exchange.kafka.security import KafkaSecurity, write_private

MAIN_CLASS = "org.apache.kafka.connect.mirror.MirrorMaker"
_SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule"
_UMASK = 0o077
LOGGERS = {"org.apache.kafka": "INFO", "org.apache.kafka.clients": "WARN"}


@dataclass(frozen=True)
class ClusterEnd:
    """One side of a flow: its alias (the site name), address and credentials."""

    alias: str
    bootstrap: str
    security: KafkaSecurity


@dataclass(frozen=True)
class Flow:
    """Records of ``topics`` flow from ``source`` (the owner site) to ``target`` (here)."""

    source: ClusterEnd
    target: ClusterEnd
    topics: tuple[str, ...]


ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


def _client_props(prefix: str, sec: KafkaSecurity) -> dict[str, str]:
    props: dict[str, str] = {f"{prefix}security.protocol": sec.protocol}
    if sec.uses_sasl:
        assert sec.username is not None and sec.password is not None
        pw = sec.password.get_secret_value()
        props[f"{prefix}sasl.mechanism"] = sec.sasl_mechanism
        props[f"{prefix}sasl.jaas.config"] = (
            f'{_SCRAM} required username="{sec.username}" password="{pw}";'
        )
    if sec.ssl_cafile is not None:
        props[f"{prefix}ssl.truststore.type"] = "PEM"
        props[f"{prefix}ssl.truststore.location"] = str(sec.ssl_cafile)
    return props


def topics_regex(topics: Sequence[str]) -> str:
    """MirrorMaker's ``topics`` is a list of regexes: each shared name matched literally."""
    return ",".join(re.escape(t) for t in sorted(topics)) or "__exchange_nothing_shared__"


def mm2_properties(flows: Sequence[Flow], *, replication: int = 1) -> dict[str, str]:
    """The ``mm2.properties`` of one MirrorMaker process (pure; secrets are in the values)."""
    clusters: dict[str, ClusterEnd] = {}
    for f in flows:
        for end in (f.source, f.target):
            if not ALIAS.match(end.alias):
                raise ConfigurationError(f"site name {end.alias!r} is not a valid cluster alias")
            clusters[end.alias] = end
    rf = str(replication)
    props: dict[str, str] = {
        "clusters": ", ".join(sorted(clusters)),
        "replication.policy.class": ("org.apache.kafka.connect.mirror.IdentityReplicationPolicy"),
        "replication.factor": rf,
        "checkpoints.topic.replication.factor": rf,
        "heartbeats.topic.replication.factor": rf,
        "offset-syncs.topic.replication.factor": rf,
        "offset-syncs.topic.location": "target",
        "config.storage.replication.factor": rf,
        "offset.storage.replication.factor": rf,
        "status.storage.replication.factor": rf,
        "sync.group.offsets.enabled": "false",
        "emit.checkpoints.enabled": "false",
        "sync.topic.acls.enabled": "false",
        "refresh.topics.interval.seconds": "5",
        "refresh.groups.enabled": "false",
        "dedicated.mode.enable.internode.rest": "false",
    }
    targets = {f.target.alias for f in flows}
    for alias in sorted(targets):
        # Worker (Connect runtime) settings reach a dedicated-mode worker only under its
        # target cluster's prefix: a top-level one is ignored and the worker kept Connect's
        # 60 s default, so `federation status` (which reads these committed source offsets)
        # showed a lag for up to a minute after everything had been copied.
        props[f"{alias}.offset.flush.interval.ms"] = "1000"
    for alias, end in sorted(clusters.items()):
        props[f"{alias}.bootstrap.servers"] = end.bootstrap
        props |= _client_props(f"{alias}.", end.security)
    for a in sorted(clusters):
        for b in sorted(clusters):
            if a != b:
                props[f"{a}->{b}.enabled"] = "false"
    for f in flows:
        key = f"{f.source.alias}->{f.target.alias}"
        props[f"{key}.enabled"] = "true"
        props[f"{key}.topics"] = topics_regex(f.topics)
        # Low-latency replication: the producer does not wait to fill batches.
        props[f"{key}.producer.linger.ms"] = "5"
        props[f"{key}.consumer.fetch.max.wait.ms"] = "100"
    return props


def write_mm2_config(directory: Path, flows: Sequence[Flow]) -> Path:
    """Write ``mm2.properties`` (0600: it holds passwords) and its log4j2 file."""
    props = mm2_properties(flows)
    path = directory / "mm2.properties"
    write_private(path, "".join(f"{k}={_escape(v)}\n" for k, v in props.items()))
    (directory / "logs").mkdir(parents=True, exist_ok=True, mode=0o700)
    write_log4j2(directory / "log4j2.properties", directory / "logs", "mirror.log", LOGGERS)
    return path


def _escape(value: str) -> str:
    # java.util.Properties: backslashes escape; a leading blank would be dropped.
    return value.replace("\\", "\\\\")


def launch(directory: Path, lib: Path, here: str, *, heap_mb: int = 256) -> subprocess.Popen[bytes]:
    """Start the MirrorMaker JVM on ``directory/mm2.properties`` (the caller supervises it).

    ``--clusters here``: this node runs only the flows *into* our cluster; without it MM2 also
    starts a (heartbeat) worker writing into every other cluster, which it may not."""
    java = shutil.which("java")
    if java is None:
        raise ConfigurationError("Java is not installed (no 'java' on PATH): cannot run MM2")
    out = directory / "logs" / "stdout.log"
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        return subprocess.Popen(
            [
                java,
                f"-Xmx{heap_mb}m",
                "-XX:+UseG1GC",
                "-XX:TieredStopAtLevel=1",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
                "-cp",
                f"{lib}/*",
                MAIN_CLASS,
                str(directory / "mm2.properties"),
                "--clusters",
                here,
            ],
            stdout=fd,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            umask=_UMASK,
        )
    finally:
        os.close(fd)


# -- the owner's broker: a reader user for the remote site ----------------------------------
def grant_mirror_reader(
    bootstrap: str,
    admin_security: KafkaSecurity,
    username: str,
    password: str,
    topics: Sequence[str],
) -> None:
    """Create (or update) SCRAM user ``username`` and let it read and describe ``topics`` only.

    Idempotent: run again with the full list when a topic is shared; revoking is
    :func:`revoke_mirror_reader`."""
    from kafka import KafkaAdminClient
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ResourcePattern,
        ResourceType,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )
    from kafka.errors import KafkaError

    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="exchange-federation",
            **admin_security.kafka_python_config(),
        )
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(f"Kafka at {bootstrap} is unreachable") from exc
    principal = f"User:{username}"
    ops = (ACLOperation.READ, ACLOperation.DESCRIBE, ACLOperation.DESCRIBE_CONFIGS)
    acls = [
        ACL(
            principal,
            "*",
            op,
            ACLPermissionType.ALLOW,
            ResourcePattern(ResourceType.TOPIC, topic),
        )
        for topic in topics
        for op in ops
    ]
    try:
        upsert = UserScramCredentialUpsertion(
            username, ScramMechanism.SCRAM_SHA_512, password, iterations=8192
        )
        errors = admin.alter_user_scram_credentials([upsert])
        if errors.get(username):
            raise KafkaUnavailable(f"creating the mirror user failed: {errors[username]}")
        if acls:
            result = admin.create_acls(acls)
            if result.get("failed"):
                raise KafkaUnavailable(f"creating the mirror ACLs failed: {result['failed']}")
    except KafkaError as exc:
        raise KafkaUnavailable(f"setting up the mirror user failed: {exc}") from exc
    finally:
        admin.close()


def revoke_mirror_reader(
    bootstrap: str, admin_security: KafkaSecurity, username: str, topic: str
) -> None:
    """Withdraw ``username``'s ACLs on ``topic`` (MirrorMaker stops copying it)."""
    from kafka import KafkaAdminClient
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="exchange-federation",
            **admin_security.kafka_python_config(),
        )
    except (KafkaError, OSError) as exc:
        raise KafkaUnavailable(f"Kafka at {bootstrap} is unreachable") from exc
    try:
        admin.delete_acls(
            [
                ACLFilter(
                    f"User:{username}",
                    "*",
                    ACLOperation.ANY,
                    ACLPermissionType.ANY,
                    ResourcePatternFilter(
                        ResourceType.TOPIC, topic, ACLResourcePatternType.LITERAL
                    ),
                )
            ]
        )
    except KafkaError as exc:
        raise KafkaUnavailable(f"withdrawing the mirror ACLs failed: {exc}") from exc
    finally:
        admin.close()


# -- lag -----------------------------------------------------------------------------------
def connect_offsets_topic(source_alias: str) -> str:
    """Where MirrorMaker's dedicated mode keeps the source offsets of a flow (target side)."""
    return f"mm2-offsets.{source_alias}.internal"


def mirrored_positions(
    target_bootstrap: str, target_security: KafkaSecurity, source_alias: str
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> next source offset MirrorMaker will copy (its committed offset+1)."""
    from exchange.kafka.client import KafkaAdapter

    adapter = KafkaAdapter(target_bootstrap, client_id="exchange-mm2-lag", security=target_security)
    out: dict[tuple[str, int], int] = {}
    try:
        try:
            reader = adapter.reader(connect_offsets_topic(source_alias))
        except NotFound:  # not created yet: nothing mirrored
            return out
        try:
            ends = reader.end_offsets()
            reader.seek({p: 0 for p in ends})
            deadline = time.monotonic() + 15
            idle = 0
            while any(pos < ends[p] for p, pos in reader.positions().items()) and idle < 3:
                batch = reader.poll(timeout_ms=300)
                idle = 0 if batch else idle + 1  # compaction gaps, markers: nothing more
                for rec in batch:
                    _read_offset(rec.key, rec.value, source_alias, out)
                if time.monotonic() > deadline:
                    raise KafkaUnavailable("reading MirrorMaker's offsets timed out")
        finally:
            reader.close()
    finally:
        adapter.close()
    return out


def _read_offset(
    key: bytes | None, value: bytes | None, alias: str, out: dict[tuple[str, int], int]
) -> None:
    with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
        connector, part = json.loads(key or b"null")
        if connector != "MirrorSourceConnector" or part.get("cluster") != alias:
            return
        tp = (str(part["topic"]), int(part["partition"]))
        if value is None:
            out.pop(tp, None)
        else:
            out[tp] = int(json.loads(value)["offset"]) + 1


def records_behind(
    source_bootstrap: str,
    source_security: KafkaSecurity,
    topic: str,
    positions: Mapping[tuple[str, int], int],
) -> int:
    """Committed records of ``topic`` at the owner not yet copied (transaction markers skipped)."""
    from exchange.kafka.client import KafkaAdapter

    adapter = KafkaAdapter(source_bootstrap, client_id="exchange-mm2-lag", security=source_security)
    try:
        reader = adapter.reader(topic)
        try:
            ends = reader.end_offsets()
            start = {p: positions.get((topic, p), 0) for p in ends}
            reader.seek(start)
            behind = 0
            deadline = time.monotonic() + 15
            idle = 0
            while any(pos < ends[p] for p, pos in reader.positions().items()) and idle < 3:
                batch = reader.poll(timeout_ms=300, max_records=2000)
                idle = 0 if batch else idle + 1  # only transaction markers left
                behind += sum(1 for r in batch if r.offset < ends[r.partition])
                if time.monotonic() > deadline:
                    raise KafkaUnavailable(f"counting the records behind on {topic} timed out")
            return behind
        finally:
            reader.close()
    finally:
        adapter.close()
