"""Witnessing between sites: cosign another site's checkpoint; keep and check cosigned ones.

- :func:`witness` (at the witnessing site): the checkpoint must be signed by the other
  site's audit key (``sites add --audit-key``) and must extend what we cosigned for that site
  before, proven by an RFC 9162 consistency proof from that size (C2SP tlog-witness): a
  smaller size is a rollback, the same size with another root or a proof that fails a fork or
  a rewritten history (:class:`~audit.witness.WitnessRefused`, an alarm); a proof from
  another size than ours is :class:`~audit.witness.WitnessSizeMismatch` carrying our size.
  Then we add our cosignature (our site identity key) and remember size and root.
- :func:`store` (at the witnessed site): the note must be our own checkpoint and carry a
  valid cosignature of a known site; it is kept under ``federation/cosigned/`` (two witnesses
  of one size: their lines are merged into one note).
- :func:`check_notes` / :func:`checked_notes` (``exchange audit verify``): every kept note's
  cosignatures are checked again; the notes then count as trusted checkpoints, so the
  recomputed log must match each root another site cosigned — a history rewritten and
  re-signed here is caught.
"""

from __future__ import annotations

import base64
import fcntl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from audit.checkpoint import BadCheckpoint, Verifier, open_note, parse_body
from audit.merkle import hasher
from audit.witness import (
    Witness,
    WitnessSizeMismatch,
    add_line,
    check_extends,
    cosign,
    cosigned_at,
    decode_proof,
    split,
)
from exchange.federation.sites import Federation, decode_public_key


def witnesses_of(fed: Federation) -> list[Witness]:
    return [Witness(s.name, decode_public_key(s.public_key)) for s in fed.sites()]


@contextmanager
def _locked(fed: Federation) -> Iterator[None]:
    """One witness decision at a time per home (gateways and CLI share the files)."""
    fed.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(fed.dir / ".witness.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def witness(
    fed: Federation,
    site: str,
    note: str,
    *,
    old_size: int | None = None,
    proof: Sequence[object] = (),
    now: int | None = None,
) -> str:
    """``note`` (a checkpoint of ``site``'s log) with our cosignature added.

    ``old_size``/``proof``: the consistency proof from the size we cosigned last to the
    note's. Without one (a bare note by hand) only a first checkpoint or the same one again
    is cosigned; a bigger one needs the proof (:class:`WitnessSizeMismatch` names our size).
    """
    known = fed.site(site)
    if not known.audit_key:
        raise BadCheckpoint(f"no audit key known for {site}: sites add ... --audit-key")
    cp = open_note(note, Verifier.parse(known.audit_key))
    h = hasher(cp.hash)
    hashes = decode_proof(proof, h)
    with _locked(fed):
        last = fed.witnessed().get(site)
        if last is None:
            if old_size not in (None, 0):
                raise WitnessSizeMismatch(
                    f"we never cosigned {site}'s log: prove consistency from size 0", size=0
                )
        else:
            m = int(last["size"])
            try:
                old_root = base64.b64decode(str(last["root"]), validate=True)
            except ValueError:
                raise BadCheckpoint(f"our record of {site}'s log is damaged") from None
            if cp.size > m and old_size != m:
                hint = "" if old_size is not None else f" (at {site}: federation witness-request)"
                raise WitnessSizeMismatch(
                    f"we cosigned {site}'s log up to size {m}: prove consistency from it{hint}",
                    size=m,
                )
            check_extends(h, (m, old_root), (cp.size, cp.root), hashes, who=site)
        stamp = int(time.time()) if now is None else now
        line = cosign(note, fed.name(), fed.private_key(), stamp)
        fed.record_witnessed(site, cp.size, base64.b64encode(cp.root).decode())
    return add_line(note, line)


def store(fed: Federation, note: str, own: Verifier) -> tuple[Path, list[str]]:
    """Keep a cosigned checkpoint of our own log; returns the file and the witnesses.

    A note already kept for the same size gains the new cosignatures (a witness's newer line
    replaces its older one); a different checkpoint of that size is refused."""
    cp = open_note(note, own)
    witnesses = witnesses_of(fed)
    by = [w for w in witnesses if cosigned_at(note, w) is not None]
    if not by:
        raise BadCheckpoint("the note carries no valid cosignature of a known site")
    with _locked(fed):
        kept = fed.cosigned_note(cp.size)
        if kept is not None:
            body, lines = split(kept)
            new_body, new_lines = split(note)
            if body != new_body:
                raise BadCheckpoint(
                    f"another checkpoint of size {cp.size} is already kept, cosigned: "
                    "two logs of one size (fork)"
                )
            names = {f"\u2014 {w.name} " for w in by}
            merged = [ln for ln in lines if not any(ln.startswith(n) for n in names)]
            merged += [ln for ln in new_lines if ln not in merged]
            note = new_body + "\n" + "\n".join(merged) + "\n"
        path = fed.store_cosigned(cp.size, note)
        _drop_superseded(fed, witnesses)
    return path, [w.name for w in witnesses if cosigned_at(note, w) is not None]


def _drop_superseded(fed: Federation, witnesses: Sequence[Witness]) -> None:
    """Forget a kept note once each of its witnesses cosigned a bigger one: the bigger root
    pins the whole log below it (verification recomputes every leaf), so nothing is lost —
    and a site witnessed every few minutes does not pile up a file per checkpoint."""
    kept = []
    for path, note in fed.cosigned_notes():
        try:
            size = parse_body(split(note)[0]).size
        except BadCheckpoint:
            continue  # left for verification to report
        by = {w.name for w in witnesses if cosigned_at(note, w) is not None}
        kept.append((path, size, by))
    top: dict[str, int] = {}
    for _, size, by in kept:
        for w in by:
            top[w] = max(top.get(w, 0), size)
    for path, size, by in kept:
        if by and all(top[w] > size for w in by):
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Cosigned:
    """One kept note whose cosignatures verify."""

    name: str  # the file (or where it came from)
    size: int
    note: str
    by: tuple[str, ...]


def check_notes(named: Sequence[tuple[str, str]], witnesses: Sequence[Witness]) -> list[Cosigned]:
    """Check each (name, note)'s cosignatures; a note without one valid cosignature of a
    known witness raises :class:`BadCheckpoint` ("TAMPERED ...", naming the note)."""
    out: list[Cosigned] = []
    for name, note in named:
        try:
            body, _ = split(note)
            size = parse_body(body).size
        except BadCheckpoint as exc:
            raise BadCheckpoint(
                f"TAMPERED: {name} is not a checkpoint note: {exc.message}"
            ) from None
        by = tuple(w.name for w in witnesses if cosigned_at(note, w) is not None)
        if not by:
            raise BadCheckpoint(f"TAMPERED: no valid witness signature on {name}")
        out.append(Cosigned(name, size, note, by))
    return out


def checked_notes(fed: Federation) -> list[Cosigned]:
    """Every kept cosigned note of this home, checked (see :func:`check_notes`)."""
    named = [(path.name, note) for path, note in fed.cosigned_notes()]
    return check_notes(named, witnesses_of(fed))


def labels(kept: Sequence[Cosigned]) -> dict[int, str]:
    """Per size, who cosigned it: named in a verification failure at that size."""
    out: dict[int, set[str]] = {}
    for c in kept:
        out.setdefault(c.size, set()).update(c.by)
    return {size: "cosigned by " + ", ".join(sorted(by)) for size, by in out.items()}


def coverage(kept: Sequence[Cosigned]) -> dict[str, int]:
    """Per witness, the biggest size of ours it cosigned."""
    out: dict[str, int] = {}
    for c in kept:
        for w in c.by:
            out[w] = max(out.get(w, 0), c.size)
    return dict(sorted(out.items()))
