"""The pure verifier against each kind of tampering, over in-memory entries."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from audit import verify
from audit.checkpoint import Checkpoint, Signer
from audit.events import AuditEvent, canonical_json, from_record
from audit.merkle import SHA256, MerkleTree, decompose
from audit.verify import Anchor, StoredEntry, verify_log
from exchange.auditing import AuditRecord

SIGNER = Signer("exchange-audit", Ed25519PrivateKey.generate())
ORIGIN = "test/audit"


def build(n: int) -> tuple[list[bytes], MerkleTree]:
    entries, prev, tree = [], "", MerkleTree(SHA256)
    for i in range(n):
        rec = AuditRecord("token.issued", actor=f"c{i % 3}", data={"i": i})
        entry = from_record(rec, i, prev, (), "2026-01-01T00:00:00.000000Z").canonical()
        lh = SHA256.leaf(entry)
        tree.append(lh)
        entries.append(entry)
        prev = lh.hex()
    return entries, tree


def note(tree: MerkleTree, size: int) -> str:
    return SIGNER.sign(Checkpoint(ORIGIN, size, tree.root(size)))


def run(entries: list[bytes], notes: list[str], **kw: object):  # type: ignore[no-untyped-def]
    return verify_log(
        SHA256,
        [StoredEntry(e) for e in entries],
        checkpoints=notes,
        verifier=SIGNER.verifier,
        origin=ORIGIN,
        **kw,  # type: ignore[arg-type]
    )


def edit(entry: bytes, **changes: object) -> bytes:
    from audit.events import decode

    ev = decode(entry)
    return dataclasses.replace(ev, **changes).canonical()  # type: ignore[arg-type]


ENTRIES, TREE = build(20)
NOTES = [note(TREE, 8), note(TREE, 16), note(TREE, 20)]


def test_intact_log_verifies() -> None:
    r = run(ENTRIES, NOTES)
    assert r.ok and r.size == 20 and r.checkpoints == 3 and r.root == TREE.root()


def test_modified_event_is_named() -> None:
    bad = list(ENTRIES)
    bad[5] = edit(bad[5], data={"i": 999})
    r = run(bad, NOTES)
    assert (r.ok, r.index, r.kind) == (False, 5, "modified")


def test_modified_last_event_caught_by_checkpoint() -> None:
    bad = list(ENTRIES)
    bad[19] = edit(bad[19], actor="someone-else")
    r = run(bad, NOTES)
    assert (r.ok, r.kind, r.index) == (False, "modified", 16)  # somewhere in [16, 20)


def test_deleted_event_is_named() -> None:
    r = run(ENTRIES[:7] + ENTRIES[8:], NOTES)
    assert (r.ok, r.index, r.kind) == (False, 7, "deleted")


def test_swapped_events_are_named() -> None:
    bad = list(ENTRIES)
    bad[3], bad[11] = bad[11], bad[3]
    r = run(bad, NOTES)
    assert (r.ok, r.index, r.kind) == (False, 3, "reordered")


def test_truncated_tail_is_named() -> None:
    r = run(ENTRIES[:17], NOTES)
    assert (r.ok, r.index, r.kind) == (False, 17, "truncated")
    r = run(ENTRIES[:20], [], expected_size=22)
    assert (r.ok, r.index, r.kind) == (False, 20, "truncated")


def test_consistent_rewrite_is_caught_by_signed_roots() -> None:
    forged, _ = build(20)
    forged = [edit(e, actor="forger") for e in forged]  # links now broken: re-link them
    relinked, prev = [], ""
    for e in forged:
        e2 = edit(e, prev=prev)
        relinked.append(e2)
        prev = SHA256.leaf(e2).hex()
    r = run(relinked, NOTES)
    assert (r.ok, r.index, r.kind) == (False, 0, "modified")


def test_bad_signature_and_forked_checkpoint() -> None:
    other = Signer("exchange-audit", Ed25519PrivateKey.generate())
    r = run(ENTRIES, [other.sign(Checkpoint(ORIGIN, 8, TREE.root(8)))])
    assert not r.ok and r.kind == "checkpoint"
    r = run(ENTRIES, [*NOTES, SIGNER.sign(Checkpoint(ORIGIN, 8, b"\x00" * 32))])
    assert not r.ok and r.kind == "checkpoint"


def test_trusted_checkpoint_beyond_log_means_truncation() -> None:
    r = run(ENTRIES[:16], NOTES[:2], trusted=[NOTES[2]])
    assert (r.ok, r.index, r.kind) == (False, 16, "truncated")


@pytest.mark.parametrize("p", [1, 7, 8, 13])
def test_pruned_log_verifies_from_anchor(p: int) -> None:
    anchor = Anchor(p, tuple(TREE.subtree(a, b) for a, b in decompose(p)), TREE.leaf(p - 1).hex())
    r = run(ENTRIES[p:], NOTES, anchor=anchor)
    assert r.ok and r.root == TREE.root()
    tampered = Anchor(p, (b"\x00" * 32, *anchor.nodes[1:]), anchor.last)
    assert not run(ENTRIES[p:], NOTES, anchor=tampered).ok


def test_event_canonical_form_is_stable() -> None:
    ev = AuditEvent(0, "t", "x", "a", None, None, "ok", {"b": 1, "a": [1, "é"]}, ("h",), "")
    assert (
        ev.canonical()
        == (
            '{"actor":"a","data":{"a":[1,"é"],"b":1},"department":null,"index":0,'
            '"outcome":"ok","prev":"","subjects":["h"],"topic":null,"ts":"t","type":"x","v":1}'
        ).encode()
    )


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_canonical_json_is_rfc8785(value: object) -> None:
    try:
        want = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        return  # values JCS refuses (e.g. lone surrogates, big ints) are not compared
    assert canonical_json(value) == want


def test_odd_data_values_never_fail_an_append() -> None:
    rec = AuditRecord(
        "x", actor="a", data={"big": 2**70, "nan": float("nan"), "t": (1, 2), 3: b"b"}
    )
    ev = from_record(rec, 0, "", (), "t")
    assert ev.data == {"big": str(2**70), "nan": "nan", "t": [1, 2], "3": "b'b'"}
    assert canonical_json(ev.to_json()) == rfc8785.dumps(ev.to_json())


def tampered_logs() -> list[tuple[str, list[bytes], list[str]]]:
    relinked, prev = [], ""
    for e in ENTRIES:
        relinked.append(edit(e, actor="forger", prev=prev))
        prev = SHA256.leaf(relinked[-1]).hex()
    cases = [
        ("intact", list(ENTRIES), NOTES),
        ("modified", [*ENTRIES[:5], edit(ENTRIES[5], data={"i": 9}), *ENTRIES[6:]], NOTES),
        ("last", [*ENTRIES[:19], edit(ENTRIES[19], actor="x")], NOTES),
        ("deleted", ENTRIES[:7] + ENTRIES[8:], NOTES),
        ("swapped", [*ENTRIES[:3], ENTRIES[11], *ENTRIES[4:11], ENTRIES[3], *ENTRIES[12:]], NOTES),
        ("repeated", [*ENTRIES[:9], ENTRIES[4], *ENTRIES[10:]], NOTES),
        ("truncated", ENTRIES[:17], NOTES),
        ("rewritten", relinked, NOTES),
        ("not json", [*ENTRIES[:9], b"{nope", *ENTRIES[10:]], NOTES),
        ("empty", [], [note(TREE, 0)]),
    ]
    return cases


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8, 16])
def test_chunked_walk_reports_what_one_entry_at_a_time_reports(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk hashes and checks entries a chunk at a time; whatever the chunk boundaries,
    the first failure (and the checkpoints checked before it) must be the same."""
    want = {name: run(entries, notes) for name, entries, notes in tampered_logs()}
    monkeypatch.setattr(verify, "CHUNK", chunk)
    got = {name: run(entries, notes) for name, entries, notes in tampered_logs()}
    assert got == want
    assert [name for name, r in want.items() if r.ok] == ["intact", "empty"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":1}',
        b' {"a":1}',
        '{"a":"é"}'.encode(),
        '{"a":1}'.encode("utf-16"),
        '{"a":1}'.encode("utf-16-le"),
        '{"a":1}'.encode("utf-8-sig"),
        b'{"a":"\xed\xa0\x80"}',  # an encoded surrogate: json.loads lets it pass
        b"{\x00",
        b"{",
        b"",
        b"\xff",
    ],
)
def test_parse_is_json_loads(raw: bytes) -> None:
    def outcome(f: Callable[[bytes], Any]) -> object:
        try:
            return f(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return type(exc)

    assert outcome(verify._parse) == outcome(json.loads)


# Values where orjson and json.loads part ways: huge ints, NaN/inf, lone surrogates, floats.
wild_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(2**63 - 2, 2**65)
    | st.integers(-(2**65), -(2**63) + 2)
    | st.floats()
    | st.text(),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ["v", "index", "ts", "type", "actor", "department", "topic", "outcome", "data"]


@given(
    st.fixed_dictionaries(
        {k: wild_values for k in FIELDS}
        | {"subjects": st.lists(wild_values, max_size=3) | wild_values, "prev": wild_values},
        optional={"extra": wild_values},
    ),
    st.sampled_from(["ascii", "utf-8", "surrogatepass"]),
)
def test_fast_decode_reads_every_checked_field_as_json_loads(
    obj: dict[str, Any], encoding: str
) -> None:
    """``_decode`` parses with orjson where it can; whatever the entry holds, what the checks
    compare (the fields and subjects, with their types) or the failure must be json.loads's."""
    try:
        text = json.dumps(obj, ensure_ascii=encoding == "ascii")
        raw = text.encode("utf-8", "surrogatepass" if encoding == "surrogatepass" else "strict")
    except UnicodeEncodeError:
        return  # a lone surrogate without surrogatepass: not bytes any store would hold

    def outcome(parse: Callable[[bytes], Any]) -> object:
        try:
            ev = verify._decode(raw, 0, parse)
        except verify._Fail as f:
            return (f.kind, f.detail)
        checked = [ev[k] for k in FIELDS if k != "data"] + [ev["prev"], ev["subjects"]]
        return repr(checked)

    assert outcome(verify._parse) == outcome(json.loads)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"v":1,"index":18446744073709551616,"ts":"t","type":"x","actor":"a","department":null,'
        b'"topic":null,"outcome":"ok","data":{},"subjects":[],"prev":""}',
        b'{"v":1,"index":0,"ts":"t","type":"x","actor":"a","department":null,"topic":null,'
        b'"outcome":"ok","data":{},"subjects":[-18446744073709551617],"prev":""}',
    ],
)
def test_fast_decode_leaves_integers_beyond_64_bits_to_json(raw: bytes) -> None:
    assert repr(verify._parse(raw)) == repr(json.loads(raw))
