"""The KMS becomes unavailable while records are published and delivered continuously.

/readyz names it at once; what needs the KMS (the first data key of a topic) fails fast with
503 ``kms_unavailable`` and nothing is published; what the key cache already holds goes on.
When the KMS is back, everything proceeds: nothing acknowledged is lost or delivered twice, no
idempotency key is stuck, and the audit log verifies from Kafka. The KMS's outage is
injected by a switch around the real local KMS (the provider of a running gateway cannot be
taken away otherwise: it is a file read into memory)."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.crypto.errors import KmsUnavailable
from exchange.crypto.kms import KekRef
from tests.integration.test_audit_tamper import verify
from tests.support.gateway import ThreadGateway
from tests.support.scenario import Scenario, build, grant, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

OUTAGE_S = 4.0


class Switch:
    """The real KMS, or an unavailable one while ``off`` is set."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.off = inner, threading.Event()

    def _check(self) -> None:
        if self.off.is_set():
            raise KmsUnavailable("KMS unreachable (injected)")

    def create_kek(self, alias: str) -> KekRef:
        self._check()
        return self.inner.create_kek(alias)  # type: ignore[no-any-return]

    def current_kek(self, alias: str) -> KekRef:
        self._check()
        return self.inner.current_kek(alias)  # type: ignore[no-any-return]

    def wrap(self, kek: KekRef, dek: bytes) -> bytes:
        self._check()
        return self.inner.wrap(kek, dek)  # type: ignore[no-any-return]

    def unwrap(self, kek: KekRef, wrapped: bytes) -> bytes:
        self._check()
        return self.inner.unwrap(kek, wrapped)  # type: ignore[no-any-return]

    def ping(self) -> bool:
        return not self.off.is_set() and bool(self.inner.ping())


def publish(s: Scenario, key: str) -> int:
    try:
        r = s.publisher.request(
            "POST",
            f"/v1/topics/{s.topic}/records",
            json={"records": [{"key": key, "value": person(len(key))}]},
            headers={"Idempotency-Key": key},
        )
    except httpx.HTTPError:
        return 0
    return r.status_code


def readyz(url: str) -> dict[str, str]:
    body: dict[str, str] = httpx.get(f"{url}/readyz", timeout=5).json()
    return body


def until(cond: Any, timeout: float) -> float:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "condition not met in time"
        time.sleep(0.1)
    return time.monotonic() - t0


def test_kms_outage_fails_fast_then_recovers_losing_nothing(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    gw = ThreadGateway(tmp_path / "home", kafka_bootstrap).start()
    metered = gw.services.crypto.keys.kms.inner  # CachingKms -> MeteredKms -> provider
    switch = Switch(metered.inner)
    metered.inner = switch
    with gw.admin() as admin:
        s, cold = build(admin, gw.url), build(admin, gw.url)  # cold: no data key yet
    grant(s, ["name", "phone"])
    sub = s.subscriber.subscribe(s.topic)
    acked: list[str] = []
    refused: list[str] = []
    during: list[str] = []
    seen: Counter[str] = Counter()
    fresh_at: list[float] = []  # when a page brought keys not seen before
    stop = threading.Event()

    def flood() -> None:
        i = 0
        while not stop.is_set():
            key = f"k{i}"
            (acked if publish(s, key) == 200 else refused).append(key)
            if switch.off.is_set() and acked and acked[-1] == key:
                during.append(key)
            i += 1

    flooded = threading.Event()  # the flood has stopped: ``acked`` is final

    def drain() -> None:
        deadline = float("inf")
        while not flooded.is_set() or set(acked) - set(seen):
            if flooded.is_set():
                deadline = min(deadline, time.monotonic() + 60)
                if time.monotonic() > deadline:
                    return
            page = s.subscriber.poll(sub, wait_ms=500)
            keys = [r["key"] for r in page["records"]]
            if any(k not in seen for k in keys):
                fresh_at.append(time.monotonic())
            seen.update(keys)
            if page["records"]:
                s.subscriber.commit(sub, page["cursor"])

    flooder, drainer = threading.Thread(target=flood), threading.Thread(target=drain)
    flooder.start()
    drainer.start()
    try:
        until(lambda: len(acked) >= 20, 60)
        switch.off.set()
        outage = time.monotonic()
        noticed = until(lambda: readyz(gw.url).get("kms") == "down", 10)
        t0 = time.monotonic()
        r = cold.publisher.request(
            "POST", f"/v1/topics/{cold.topic}/records", json={"records": [{"value": person(1)}]}
        )
        fast = time.monotonic() - t0
        assert r.status_code == 503 and r.json()["code"] == "kms_unavailable", r.text
        time.sleep(OUTAGE_S)
        switch.off.clear()
        until(lambda: readyz(gw.url).get("status") == "ready", 10)
        r = cold.publisher.request(
            "POST", f"/v1/topics/{cold.topic}/records", json={"records": [{"value": person(1)}]}
        )
        assert r.status_code == 200, r.text
        time.sleep(1.0)
    finally:
        stop.set()
        flooder.join(60)
        flooded.set()
        drainer.join(90)
    retried = {k: publish(s, k) for k in refused}  # every key ends with an answer
    stuck = [k for k, code in retried.items() if code != 200]
    s.close()
    cold.close()
    gw.stop()
    lost = set(acked) - set(seen)
    duplicates = sum(n - 1 for n in seen.values())
    times = [outage, *sorted(t for t in fresh_at if t >= outage)]
    stall = max((b - a for a, b in itertools.pairwise(times)), default=0.0)
    print(
        f"KMS down {OUTAGE_S:.0f}s: readyz kms=down after {noticed:.1f}s; a publish needing "
        f"the KMS answered 503 in {fast * 1000:.0f} ms; acknowledged {len(acked)} "
        f"({len(during)} while the KMS was down, from the key cache), refused {len(refused)}, "
        f"delivered {len(set(seen))}, duplicates {duplicates}, lost {len(lost)}, "
        f"stuck keys {len(stuck)}, longest delivery stall from the outage {stall:.1f}s"
    )
    assert not lost and duplicates == 0 and not stuck
    code, out = verify(tmp_path / "home", kafka_bootstrap, "--source", "kafka")
    assert code == 0, out
