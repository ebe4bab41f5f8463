"""Before the first row is sent: the proposal, then the schema and topic made ready.

``plan`` reads the topic and its subject's latest schema and proposes a mapping (or loads a
saved one); ``ready`` registers the confirmed mapping's schema under the subject's
compatibility rules and creates the topic if it does not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest import infer
from ingest import mapping as mappings
from ingest.api import GatewayApi
from ingest.errors import SourceError
from ingest.mapping import Mapping
from ingest.sources import Source


@dataclass(frozen=True)
class Plan:
    topic: str
    subject: str
    topic_exists: bool
    latest: dict[str, Any] | None  # the subject's latest schema, if any
    mapping: Mapping  # the proposal, or the saved mapping
    saved: bool  # the mapping came from a file


def sample(src: Source, rows: int | None = None) -> list[Any]:
    """The first rows that could be read (``infer.SAMPLE_ROWS`` by default)."""
    rows = rows or infer.SAMPLE_ROWS
    out = []
    for row in src.rows():
        if row.values is not None:
            out.append(row.values)
        if len(out) >= rows:
            break
    return out


def plan(
    api: GatewayApi,
    src: Source,
    topic: str,
    *,
    mapping_file: Path | None = None,
    key_column: str | None = None,
) -> Plan:
    if "." not in topic:
        raise SourceError("--topic must be '<department>.<dataset>'")
    entry = api.topic(topic)
    subject = str(entry["value_subject"]) if entry else f"{topic}-value"
    latest = api.latest_schema(subject)
    if mapping_file is not None and mapping_file.exists():
        return Plan(
            topic, subject, entry is not None, latest, mappings.load(mapping_file, topic), True
        )
    if key_column and key_column not in src.columns:
        raise SourceError(f"key column {key_column!r} is not a column of the source")
    proposal = infer.propose(topic, src.columns, sample(src), key_column)
    if latest is not None:
        proposal = infer.align(proposal, latest)
    return Plan(topic, subject, entry is not None, latest, proposal, False)


def ready(api: GatewayApi, p: Plan, mapping: Mapping, share_type: str = "conditional") -> int:
    """Register the schema (a compatible new version, or a clear refusal) and create the
    topic if needed; returns the schema id records are written with."""
    mappings.check(mapping)
    schema_id = api.register(p.subject, mapping.schema(), p.latest is not None)
    if not p.topic_exists:
        api.create_topic(p.topic, p.subject, share_type)
    return schema_id
