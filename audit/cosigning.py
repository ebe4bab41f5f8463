"""Witnessing over the site link, both ends: the use cases behind ``POST /v1/federation/witness``.

- :func:`answer_request` (the witness): checks and cosigns another site's checkpoint
  (:func:`audit.witnessing.witness`), audited ``federation.witnessed``; a refusal is audited
  ``federation.witness_refused`` — with ``alarm: true`` and an error log line when the
  checkpoint contradicts what we cosigned (rollback, fork, failed consistency proof).
- :class:`WitnessScheduler` (the witnessed site, in every gateway of a site with a federation
  identity): every ``EXCHANGE_WITNESS_INTERVAL_S`` it signs a checkpoint of our log and sends
  it to each known site with the RFC 9162 consistency proof from the size that site cosigned
  last; keeps the cosigned note (``federation/cosigned/``), audited ``federation.cosigned``;
  a refusal is audited ``federation.cosign_refused``. An unreachable witness is retried with
  backoff (1 s doubling, at most the interval); ``federation/witnesses.json`` and the gauge
  ``exchange_witness_cosignature_age_seconds{site}`` show when each site last cosigned.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from audit.checkpoint import BadCheckpoint
from audit.service import AuditService
from audit.witness import Witness, WitnessRefused, cosigned_at, split
from audit.witnessing import store, witness
from exchange.auditing import AuditRecord, AuditSink
from exchange.errors import ExchangeError
from exchange.federation.sitecall import SiteCaller
from exchange.federation.sites import Federation, Site, decode_public_key
from exchange.metrics import WITNESS_AGE_SECONDS

log = logging.getLogger(__name__)

PATH = "/v1/federation/witness"
RETRY_BASE_S = 1.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- the witness ---------------------------------------------------------------------------


def answer_request(
    fed: Federation,
    sink: AuditSink,
    site: str,
    note: str,
    old_size: int | None,
    proof: Sequence[object],
) -> str:
    """The note with our cosignature; every refusal audited before it is raised."""
    try:
        cosigned = witness(fed, site, note, old_size=old_size, proof=proof)
    except ExchangeError as exc:
        alarm = isinstance(exc, WitnessRefused)
        if alarm:
            log.error("ALARM: refused to cosign %s's audit checkpoint: %s", site, exc.message)
        sink.append(
            AuditRecord(
                "federation.witness_refused",
                actor=f"site:{site}",
                outcome="denied",
                data={"site": site, "code": exc.code, "reason": exc.message, "alarm": alarm},
            )
        )
        raise
    size = int(split(cosigned)[0].split("\n")[1])
    sink.append(
        AuditRecord("federation.witnessed", actor=f"site:{site}", data={"site": site, "size": size})
    )
    return cosigned


# -- the witnessed site ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    site: str
    ok: bool
    size: int | None = None
    error: str | None = None


class WitnessScheduler:
    """Asks every known site to cosign our latest checkpoint, on a schedule (a daemon thread)."""

    def __init__(
        self,
        service: AuditService,
        fed: Federation,
        sink: AuditSink,
        interval: float,
        caller: Callable[[Federation], SiteCaller] | None = None,
    ) -> None:
        self.service, self.fed, self.sink, self.interval = service, fed, sink, interval
        self._caller = caller or (lambda f: SiteCaller(f.name(), f.private_key()))
        self._due: dict[str, float] = {}
        self._last: dict[str, float] = {}  # epoch of the last cosignature, per site (gauge)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-witnessing", daemon=True)

    def start(self) -> WitnessScheduler:
        if self.interval > 0:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def _run(self) -> None:
        tick = min(1.0, self.interval)
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # never fatal: logged, retried at the next tick
                log.warning("scheduled witnessing failed", exc_info=True)
            self._stop.wait(tick)

    def _sites(self) -> list[Site]:
        try:
            self.fed.name()
        except ExchangeError:  # no federation identity: nothing to witness
            return []
        return self.fed.sites()

    def run_once(self, *, force: bool = False) -> list[Outcome]:
        """Ask each site that is due (every site with ``force``)."""
        now = time.monotonic()
        due = [s for s in self._sites() if force or self._due.get(s.name, 0.0) <= now]
        out: list[Outcome] = []
        for site in due:
            if self._stop.is_set():
                break
            self._watch(site.name)
            result = self.ask(site)
            failures = int(self.fed.witnesses().get(site.name, {}).get("failures", 0))
            delay = (
                self.interval
                if result.ok
                else min(RETRY_BASE_S * 2 ** max(failures - 1, 0), max(self.interval, 1.0))
            )
            self._due[site.name] = time.monotonic() + delay
            out.append(result)
        return out

    def _watch(self, site: str) -> None:
        if site in self._last:
            return
        at = self.fed.witnesses().get(site, {}).get("at_epoch")
        self._last[site] = float(at) if isinstance(at, int | float) else math.nan
        WITNESS_AGE_SECONDS.labels(site=site).set_function(lambda: self._age(site))

    def _age(self, site: str) -> float:
        last = self._last.get(site, math.nan)
        return math.inf if math.isnan(last) else max(0.0, time.time() - last)

    def ask(self, site: Site) -> Outcome:
        """One round with ``site``: checkpoint, proof, cosignature, kept note; never raises."""
        attempt = time.time()
        try:
            size, note = self._cosigned_by(site)
            path, _ = store(self.fed, note, self.service.signer.verifier)
        except _Refused as r:
            return self._failed(site, attempt, r.text, refused=r)
        except ExchangeError as exc:
            log.warning("witness %s: %s", site.name, exc.message)
            return self._failed(site, attempt, exc.message)
        root = split(note)[0].split("\n")[2]
        now = time.time()
        self.fed.update_witness(
            site.name,
            size=size,
            root=root,
            at=_iso(now),
            at_epoch=now,
            last_attempt=_iso(attempt),
            error=None,
            failures=0,
        )
        self._last[site.name] = now
        self.sink.append(
            AuditRecord(
                "federation.cosigned",
                actor="system",
                data={"site": site.name, "size": size, "note": path.name},
            )
        )
        return Outcome(site.name, True, size)

    def _failed(
        self, site: Site, attempt: float, error: str, refused: _Refused | None = None
    ) -> Outcome:
        failures = int(self.fed.witnesses().get(site.name, {}).get("failures", 0)) + 1
        self.fed.update_witness(
            site.name, last_attempt=_iso(attempt), error=error[:500], failures=failures
        )
        if refused is not None:
            if refused.alarm:
                log.error("ALARM: site %s refused to cosign our checkpoint: %s", site.name, error)
            self.sink.append(
                AuditRecord(
                    "federation.cosign_refused",
                    actor="system",
                    outcome="denied",
                    data={
                        "site": site.name,
                        "code": refused.code,
                        "reason": error[:500],
                        "alarm": refused.alarm,
                    },
                )
            )
        return Outcome(site.name, False, error=error)

    def _request(self, note: str, size: int, old: int) -> bytes:
        proof: list[str] = []
        if 0 < old < size:
            answer = self.service.consistency(old, size)
            proof = [base64.b64encode(bytes.fromhex(p)).decode() for p in answer["proof"]]
        body = {"checkpoint": note, "old_size": old, "proof": proof}
        return json.dumps(body).encode()

    def _cosigned_by(self, site: Site) -> tuple[int, str]:
        cp = self.service.checkpoint()
        old = int(self.fed.witnesses().get(site.name, {}).get("size", 0))
        caller = self._caller(self.fed)
        try:
            for attempt in range(2):
                status, answer = caller.post(
                    site.url, site.name, PATH, self._request(cp.note, cp.size, old)
                )
                if status == 200 and isinstance(answer, dict):
                    return cp.size, self._check_answer(site, cp.note, answer)
                code = answer.get("code") if isinstance(answer, dict) else None
                theirs = answer.get("size") if isinstance(answer, dict) else None
                if code == "witness_size_mismatch" and isinstance(theirs, int) and attempt == 0:
                    old = theirs  # it cosigned another size last (we lost an answer): from it
                    continue
                detail = answer.get("detail") if isinstance(answer, dict) else None
                raise _Refused(str(code or status), f"{status} {code}: {detail}")
            raise AssertionError("unreachable")
        finally:
            caller.close()

    def _check_answer(self, site: Site, ours: str, answer: dict[str, Any]) -> str:
        note = answer.get("note")
        if not isinstance(note, str):
            raise _Refused("bad_answer", f"{site.name} answered without a cosigned note")
        try:
            same = split(note)[0] == split(ours)[0]
        except BadCheckpoint:
            same = False
        w = Witness(site.name, decode_public_key(site.public_key))
        if not same or cosigned_at(note, w) is None:
            raise _Refused(
                "bad_answer", f"{site.name}'s answer carries no valid cosignature of our checkpoint"
            )
        return note


class _Refused(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code, self.text = code, text
        self.alarm = code == WitnessRefused.code
