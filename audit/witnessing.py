"""Witnessing between sites: cosign another site's checkpoint; keep and check cosigned ones.

- :func:`witness` (at the witnessing site): the checkpoint must be signed by the other
  site's audit key (``sites add --audit-key``) and must not contradict what we cosigned for
  that site before (a smaller size is a rollback, the same size with another root a fork);
  then we add our cosignature (our site identity key) and remember size and root.
- :func:`store` (at the witnessed site): the note must be our own checkpoint and carry a
  valid cosignature of a known site; it is kept under ``federation/cosigned/``.
- :func:`checked_notes` (``exchange audit verify``): every kept note's cosignatures are
  checked again; the notes then count as trusted checkpoints, so the recomputed log must
  match each root another site cosigned — a history rewritten and re-signed here is caught.

Not done (yet): the witness does not ask for an RFC 9162 consistency proof between the
checkpoint it cosigned last and the new one (C2SP tlog-witness does); it checks monotonic size
and same-size equality only.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

from audit.checkpoint import BadCheckpoint, Verifier, open_note
from audit.witness import Witness, add_line, cosign, cosigned_at
from exchange.federation.sites import Federation, decode_public_key


def _witnesses(fed: Federation) -> list[Witness]:
    return [Witness(s.name, decode_public_key(s.public_key)) for s in fed.sites()]


def witness(fed: Federation, site: str, note: str, *, now: int | None = None) -> str:
    """``note`` (a checkpoint of ``site``'s log) with our cosignature added."""
    known = fed.site(site)
    if not known.audit_key:
        raise BadCheckpoint(f"no audit key known for {site}: sites add ... --audit-key")
    cp = open_note(note, Verifier.parse(known.audit_key))
    root = base64.b64encode(cp.root).decode()
    last = fed.witnessed().get(site)
    if last is not None:
        if cp.size < int(last["size"]):
            raise BadCheckpoint(
                f"{site}'s checkpoint of size {cp.size} is older than the {last['size']} "
                "we cosigned (rollback)"
            )
        if cp.size == int(last["size"]) and root != last["root"]:
            raise BadCheckpoint(f"{site} shows two different logs of size {cp.size} (fork)")
    line = cosign(note, fed.name(), fed.private_key(), int(time.time()) if now is None else now)
    fed.record_witnessed(site, cp.size, root)
    return add_line(note, line)


def store(fed: Federation, note: str, own: Verifier) -> tuple[Path, list[str]]:
    """Keep a cosigned checkpoint of our own log; returns the file and the witnesses."""
    cp = open_note(note, own)
    by = [w.name for w in _witnesses(fed) if cosigned_at(note, w) is not None]
    if not by:
        raise BadCheckpoint("the note carries no valid cosignature of a known site")
    return fed.store_cosigned(cp.size, note), by


def checked_notes(fed: Federation) -> tuple[list[str], list[str]]:
    """(kept cosigned notes, one line per note: who witnessed it); a note whose cosignatures
    no longer verify raises :class:`BadCheckpoint` naming the file."""
    witnesses = _witnesses(fed)
    notes: list[str] = []
    lines: list[str] = []
    for path, note in fed.cosigned_notes():
        by = [w.name for w in witnesses if cosigned_at(note, w) is not None]
        if not by:
            raise BadCheckpoint(f"TAMPERED: no valid witness signature on {path.name}")
        notes.append(note)
        lines.append(f"{path.name} witnessed by {', '.join(by)}")
    return notes, lines
