"""The console's in-browser verifier (gateway/console/static/js/verify.js) in real Chromium,
against proofs and signed checkpoints made by the Python audit code.

The module is served over http://127.0.0.1 (a secure context, so WebCrypto's Ed25519 is
there) by a plain static file server: no gateway, the verifier must stand alone.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from playwright.sync_api import Page, sync_playwright

from audit.checkpoint import Checkpoint, Signer
from audit.events import AuditEvent
from audit.keys import fingerprint
from audit.merkle import SHA256, MerkleTree

pytestmark = pytest.mark.e2e

STATIC = Path(__file__).parents[2] / "gateway" / "console" / "static"
SIGNER = Signer("exchange-audit", Ed25519PrivateKey.generate())
KEY = SIGNER.verifier.encode()
N = 21


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    handler = functools.partial(_Quiet, directory=str(STATIC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            p = browser.new_page()
            p.goto(f"http://127.0.0.1:{server.server_address[1]}/js/")
            p.evaluate("async () => { window.v = await import('/js/verify.js'); }")
            yield p
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def _entries() -> list[str]:
    out, prev = [], ""
    for i in range(N):
        ev = AuditEvent(
            index=i,
            ts="2026-11-30T10:00:00.000000Z",
            type="record.delivered" if i % 2 else "record.published",
            actor=f"client-{i % 3}",
            department="health",
            topic="health.visits",
            outcome="ok",
            data={"n": i, "名": "数据"},  # non-ASCII: the leaf is over the UTF-8 bytes
            subjects=(),
            prev=prev,
        )
        entry = ev.canonical()
        prev = SHA256.leaf(entry).hex()
        out.append(entry.decode())
    return out


ENTRIES = _entries()
TREE = MerkleTree(SHA256, leaves=[SHA256.leaf(e.encode()) for e in ENTRIES])


def note(size: int, signer: Signer = SIGNER) -> str:
    return signer.sign(Checkpoint("exchange.test/audit", size, TREE.root(size), "sha256"))


def event_args(index: int, size: int) -> dict[str, Any]:
    return {
        "entry": ENTRIES[index],
        "index": index,
        "proof": [p.hex() for p in TREE.inclusion_proof(index, size)],
        "checkpoint": note(size),
    }


def verify_event(page: Page, args: dict[str, Any], key: str = KEY) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate("([a, k]) => window.v.verifyEvent(a, k)", [args, key])
    return result


def test_every_inclusion_proof_verifies(page: Page) -> None:
    cases = [event_args(i, n) for n in (1, 2, 3, 7, 8, 13, N) for i in range(n)]
    results = page.evaluate(
        "async ([cases, key]) => Promise.all(cases.map((c) => window.v.verifyEvent(c, key)))",
        [cases, KEY],
    )
    assert [r["code"] for r in results] == ["included"] * len(cases)
    assert results[-1]["leafHash"] == TREE.leaf(N - 1).hex()


def test_a_tampered_event_fails(page: Page) -> None:
    args = event_args(8, N)
    forged = args["entry"].replace('"n":8', '"n":80')
    assert forged != args["entry"]
    assert verify_event(page, {**args, "entry": forged})["code"] == "not_included"
    other = {**args, "entry": ENTRIES[9]}  # a genuine event, offered for another index
    assert verify_event(page, other)["code"] == "bad_entry"


def test_a_tampered_proof_fails(page: Page) -> None:
    args = event_args(5, N)
    proof = list(args["proof"])
    flipped = proof[0][:-1] + ("0" if proof[0][-1] != "0" else "1")
    for bad in ([flipped, *proof[1:]], proof[:-1], [*proof, proof[0]], list(reversed(proof))):
        assert verify_event(page, {**args, "proof": bad})["ok"] is False
    assert verify_event(page, {**args, "index": 6})["ok"] is False
    assert verify_event(page, {**args, "proof": ["zz"]})["code"] == "malformed"


def test_a_wrong_or_forged_key_or_note_fails(page: Page) -> None:
    args = event_args(3, N)
    stranger = Signer("exchange-audit", Ed25519PrivateKey.generate())
    assert verify_event(page, args, stranger.verifier.encode())["code"] == "bad_signature"
    # A server that forges a proof signs it with its own key: the pinned key refuses it.
    forged_note = stranger.sign(Checkpoint("exchange.test/audit", N, TREE.root(N), "sha256"))
    assert verify_event(page, {**args, "checkpoint": forged_note})["code"] == "bad_signature"
    name, _kid, blob = KEY.split("+", 2)
    assert verify_event(page, args, f"{name}+00000000+{blob}")["code"] == "bad_key"
    assert verify_event(page, args, "garbage")["code"] == "bad_key"
    edited = args["checkpoint"].replace(f"\n{N}\n", f"\n{N + 1}\n", 1)
    assert verify_event(page, {**args, "checkpoint": edited})["code"] == "bad_signature"


def test_consistency_between_checkpoints(page: Page) -> None:
    pairs = [(m, n) for n in (1, 5, 8, 13, N) for m in range(n + 1) if m >= 1]
    cases = [[note(m), note(n), [p.hex() for p in TREE.consistency_proof(m, n)]] for m, n in pairs]
    ok = page.evaluate(
        "async ([cases, key]) => Promise.all(cases.map(([a, b, p]) =>"
        " window.v.verifyCheckpointPair(a, b, p, key).then((r) => r.ok)))",
        [cases, KEY],
    )
    assert all(ok), [pairs[i] for i, x in enumerate(ok) if not x]
    older, newer, proof = cases[-3]
    assert proof
    last = proof[-1]
    bad = [*proof[:-1], last[:-1] + ("0" if last[-1] != "0" else "1")]
    r = page.evaluate(
        "([a, b, p, k]) => window.v.verifyCheckpointPair(a, b, p, k)", [older, newer, bad, KEY]
    )
    assert r["code"] == "inconsistent"
    fork = MerkleTree(SHA256, leaves=[*TREE.leaves[:12], SHA256.leaf(b"x"), *TREE.leaves[13:]])
    forked = SIGNER.sign(Checkpoint("exchange.test/audit", N, fork.root(N), "sha256"))
    r = page.evaluate(
        "([a, b, p, k]) => window.v.verifyCheckpointPair(a, b, p, k)",
        [note(13), forked, [p.hex() for p in TREE.consistency_proof(13, N)], KEY],
    )
    assert r["code"] == "inconsistent"


def test_fingerprint_and_pinning(page: Page) -> None:
    assert page.evaluate("(k) => window.v.fingerprint(k)", KEY) == fingerprint(KEY)
    assert page.evaluate("(k) => window.v.pinKey(k).then(() => window.v.pinnedKey())", KEY) == KEY
    refused = page.evaluate(
        "() => window.v.pinKey('not a key').then(() => 'pinned', (e) => e.code)"
    )
    assert refused == "bad_key"
    assert page.evaluate("() => window.v.pinnedKey()") == KEY
    page.evaluate("() => window.v.unpinKey()")
    assert page.evaluate("() => window.v.pinnedKey()") is None
