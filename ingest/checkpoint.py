"""The checkpoint of an import: how far it got, written atomically after every batch.

A rerun with the same source, topic and mapping continues after ``ordinal`` (files) or
``watermark`` (SQL). Batches sent but not yet confirmed when the import stopped are sent again
with the same idempotency keys, so the gateway answers them from its idempotency store
instead of publishing twice. The reject file is cut back to ``reject_bytes``, so a row is
rejected once too.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ingest.errors import ImportFailed

FORMAT = 1


@dataclass
class Checkpoint:
    identity: str  # topic + source fingerprint + mapping digest
    topic: str
    source: str
    ordinal: int = 0  # every row up to this one is published or rejected
    watermark: Any = None  # JSON form (see encode_watermark) of the last order value done
    batches: int = 0
    published: int = 0
    rejected: int = 0
    reject_bytes: int = 0
    complete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        data = json.dumps({"format": FORMAT, **asdict(self)}, ensure_ascii=False, indent=1)
        with tmp.open("w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint | None:
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            if raw.pop("format", None) != FORMAT:
                raise ValueError("unknown format")
            return cls(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise ImportFailed(
                f"checkpoint {path} is unreadable ({exc}); move it away to start over"
            ) from None


def encode_watermark(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"datetime": v.isoformat()}
    if isinstance(v, date):
        return {"date": v.isoformat()}
    if isinstance(v, Decimal):
        return {"decimal": str(v)}
    return v


def decode_watermark(v: Any) -> Any:
    if isinstance(v, dict):
        if "datetime" in v:
            return datetime.fromisoformat(v["datetime"])
        if "date" in v:
            return date.fromisoformat(v["date"])
        if "decimal" in v:
            return Decimal(v["decimal"])
    return v
