"""Random Avro schemas with classified fields at random depths and in random containers, and
random records for them (the issue 12.1 property tests)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

MAX_DEPTH = 3
KINDS = ["secret", "plain", "record", "array", "map", "optional", "union", "reuse", "recurse"]
SEALED_CLASSES = ("secret", "sensitive")


@dataclass
class Gen:
    draw: Any
    defined: dict[str, dict[str, Any]] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    count: itertools.count[int] = field(default_factory=itertools.count)

    def record(self, depth: int) -> dict[str, Any]:
        name = f"R{next(self.count)}"
        # A required field only this record has: union branches are always told apart.
        fields: list[dict[str, Any]] = [{"name": f"k_{name}", "type": "string"}]
        rec = {"type": "record", "name": name, "fields": fields}
        self.stack.append(name)
        for i in range(self.draw(st.integers(1, 3))):
            fields.append(self.field(f"f{i}", depth))
        self.stack.pop()
        self.defined[name] = rec
        return rec

    def field(self, name: str, depth: int) -> dict[str, Any]:
        kinds = KINDS if depth < MAX_DEPTH else ["secret", "plain", "reuse", "recurse"]
        kind = self.draw(st.sampled_from(kinds))
        classified = {"classification": self.draw(st.sampled_from(SEALED_CLASSES))}
        reusable = [n for n in self.defined if n not in self.stack]
        if kind == "secret":
            return {"name": name, "type": "string", **classified}
        if kind == "record":
            whole = self.draw(st.booleans())  # a classified record is sealed as one value
            return {"name": name, "type": self.record(depth + 1), **(classified if whole else {})}
        if kind == "array":
            return {"name": name, "type": {"type": "array", "items": self.record(depth + 1)}}
        if kind == "map":
            return {"name": name, "type": {"type": "map", "values": self.record(depth + 1)}}
        if kind == "optional":
            return {"name": name, "type": ["null", self.record(depth + 1)], "default": None}
        if kind == "union":
            return {"name": name, "type": [self.record(depth + 1), self.record(depth + 1)]}
        if kind == "reuse" and reusable:
            return {"name": name, "type": self.draw(st.sampled_from(reusable))}
        if kind == "recurse" and self.stack:
            items = self.draw(st.sampled_from(self.stack))
            return {"name": name, "type": {"type": "array", "items": items}, "default": []}
        return {"name": name, "type": "string", "classification": "internal"}


@dataclass
class Values:
    draw: Any
    named: dict[str, dict[str, Any]]
    secrets: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)

    def text(self, secret: bool) -> str:
        token = uuid.uuid4().hex[:12]
        if secret:
            self.secrets.append(f"SECRET{token}")
            return self.secrets[-1]
        self.plain.append(f"plain{token}")
        return self.plain[-1]

    def of(self, t: Any, secret: bool, depth: int) -> Any:
        if isinstance(t, str) and t in self.named:
            t = self.named[t]
        if t == "string":
            return self.text(secret)
        if t == "null":
            return None
        if isinstance(t, list):
            choices = [b for b in t if depth < 2 * MAX_DEPTH or b == "null"] or t
            return self.of(self.draw(st.sampled_from(choices)), secret, depth + 1)
        kind = t["type"]
        if kind == "record":
            out = {}
            for f in t["fields"]:
                hidden = secret or f.get("classification") in SEALED_CLASSES
                if "default" in f and self.draw(st.booleans()):
                    continue  # left out: the JSON path fills in the default
                out[f["name"]] = self.of(f["type"], hidden, depth + 1)
            return out
        n = self.draw(st.integers(0, 2)) if depth < 2 * MAX_DEPTH else 0
        if kind == "array":
            return [self.of(t["items"], secret, depth + 1) for _ in range(n)]
        return {f"key{i}": self.of(t["values"], secret, depth + 1) for i in range(n)}


@st.composite
def cases(draw: Any) -> tuple[dict[str, Any], list[Any], Values]:
    gen = Gen(draw)
    schema = gen.record(0)
    values = Values(draw, gen.defined)
    records = [values.of(schema, False, 0) for _ in range(draw(st.integers(2, 4)))]
    return schema, records, values


def with_defaults(value: Any, t: Any, named: dict[str, Any]) -> Any:
    """The Avro path has no defaults to fall back on in fastavro's writer for left-out
    fields of records inside containers; fill them as the registry's default says."""
    if isinstance(t, str) and t in named:
        t = named[t]
    if isinstance(t, list):
        if value is None:
            return None
        recs = [named.get(b, b) if isinstance(b, str) else b for b in t if b != "null"]
        match = next(r for r in recs if isinstance(value, dict) and f"k_{r['name']}" in value)
        return with_defaults(value, match, named)
    if isinstance(t, dict) and t.get("type") == "record" and isinstance(value, dict):
        return {
            f["name"]: with_defaults(value.get(f["name"], f.get("default")), f["type"], named)
            for f in t["fields"]
        }
    if isinstance(t, dict) and t.get("type") == "array" and isinstance(value, list):
        return [with_defaults(v, t["items"], named) for v in value]
    if isinstance(t, dict) and t.get("type") == "map" and isinstance(value, dict):
        return {k: with_defaults(v, t["values"], named) for k, v in value.items()}
    return value
