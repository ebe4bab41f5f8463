"""Failure throttling at the token endpoint over real HTTP (issue 12 items 7 and 10).

A bounded flood of wrong secrets from one loopback address (127.0.0.3) must meet 429 +
Retry-After, be audited with the client id actually tried, and must not slow a valid client
connecting from another address (127.0.0.2) — compared with its own unloaded latency in the
same test, never with an absolute time.
"""

from __future__ import annotations

import base64
import json
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey

from exchange.client import ExchangeClient
from tests.conftest import make_client, make_department
from tests.e2e.test_audit_review import events
from tests.e2e.test_auth_private_key_jwt import assertion
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]
FLOOD = 600
ATTACKER, OTHER = "127.0.0.3", "127.0.0.2"


@pytest.fixture(scope="module")
def gw(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadGateway]:
    # A gateway of its own: the flood's lockouts must not leak into other tests.
    g = ThreadGateway(tmp_path_factory.mktemp("gw-throttle"), kafka_bootstrap)
    yield g.start()
    g.stop()


def http_from(address: str) -> httpx.Client:
    """A client whose connections leave from ``address`` (all of 127/8 is loopback)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=60)


def token(http: httpx.Client, gw: ThreadGateway, cid: str, secret: str) -> httpx.Response:
    data = {"grant_type": "client_credentials"}
    return http.post(f"{gw.url}/oauth/token", data=data, auth=(cid, secret))


def timed(http: httpx.Client, gw: ThreadGateway, client: ExchangeClient) -> float:
    start = time.perf_counter()
    r = token(http, gw, client.client_id, client._secret)
    assert r.status_code == 200, r.text
    return time.perf_counter() - start


def of_type(auditor: ExchangeClient, kind: str, actor: str) -> list[dict[str, Any]]:
    return events(auditor, type=kind, client=actor)


def test_flood_of_wrong_secrets_is_throttled_audited_and_starves_nobody(
    gw: ThreadGateway,
) -> None:
    with gw.admin() as admin, gw.auditor() as auditor:
        make_department(admin, "flooded")
        victim = make_client(admin, gw.url, "flooded", ["publisher"])
        bystander = make_client(admin, gw.url, "flooded", ["subscriber"])
        victim.token()  # the victim's own place (127.0.0.1) becomes a known pair

        with http_from(OTHER) as other, http_from(ATTACKER) as attacker:
            timed(other, gw, bystander)  # warm-up
            unloaded = [timed(other, gw, bystander) for _ in range(5)]

            def wrong(i: int) -> httpx.Response:
                # half aimed at the victim, half spraying made-up client ids
                cid = victim.client_id if i % 2 else f"guess-{i}"
                return token(attacker, gw, cid, secrets.token_urlsafe(8))

            loaded: list[float] = []
            done = threading.Event()

            def legit() -> None:
                while not done.is_set() and len(loaded) < 20:
                    loaded.append(timed(other, gw, bystander))

            with ThreadPoolExecutor(9) as pool:
                watcher = pool.submit(legit)
                flood = list(pool.map(wrong, range(FLOOD)))
                done.set()
                watcher.result()

        codes = [r.status_code for r in flood]
        assert set(codes) <= {401, 429}
        assert codes.count(429) > FLOOD // 2, codes.count(401)
        assert all(1 <= int(r.headers["retry-after"]) <= 300 for r in flood if r.status_code == 429)
        assert all(r.json()["error"] == "temporarily_unavailable" for r in flood[-50:])
        # The valid client from another address was not starved by the flood.
        assert len(loaded) >= 3
        base, during = statistics.median(unloaded), statistics.median(loaded)
        assert during <= 4 * base + 0.25, (unloaded, loaded)
        # Nor was the victim, from where it usually connects (a known pair).
        with http_from("127.0.0.1") as home:
            assert token(home, gw, victim.client_id, victim._secret).status_code == 200

        # Audited with the client id actually tried, not "unknown".
        denied = of_type(auditor, "token.denied", victim.client_id)
        reasons = {e["data"]["reason"] for e in denied}
        assert {"invalid_client", "throttled"} <= reasons
        assert all(e["data"]["address"] == ATTACKER for e in denied)
        assert of_type(auditor, "token.denied", "guess-2")
        lockouts = events(auditor, type="token.lockout")
        assert {e["data"]["locked"] for e in lockouts} >= {f"address:{ATTACKER}"}
        assert not of_type(auditor, "token.denied", "unknown")
        victim.close()
        bystander.close()


def test_every_failed_client_authentication_is_audited_with_the_tried_id(
    gw: ThreadGateway,
) -> None:
    with gw.admin() as admin, gw.auditor() as auditor, http_from("127.0.0.4") as http:
        make_department(admin, "tried")
        app = make_client(admin, gw.url, "tried", ["publisher"])
        bearer = app.token()
        tries = {
            "via-basic": ("/oauth/token", {"grant_type": "client_credentials"}, ("via-basic", "x")),
            "via-form": (
                "/oauth/token",
                {"grant_type": "client_credentials", "client_id": "via-form", "client_secret": "x"},
                None,
            ),
            "via-introspect": ("/oauth/introspect", {"token": bearer}, ("via-introspect", "x")),
            "via-revoke": ("/oauth/revoke", {"token": bearer}, ("via-revoke", "x")),
        }
        for tried, (path, data, auth) in tries.items():
            r = http.post(f"{gw.url}{path}", data=data, auth=auth)
            assert r.status_code == 401, r.text
            assert r.json()["error"] == "invalid_client"
            (ev,) = of_type(auditor, "token.denied", tried)
            assert ev["outcome"] == "denied"
            assert ev["data"]["endpoint"] == path.rsplit("/", 1)[1]
            assert ev["data"]["reason"] == "invalid_client"
        # the token was neither revoked nor disclosed
        assert app.call("GET", "/v1/departments")

        # a bad private_key_jwt assertion names the client it claimed to be
        key = ECKey.generate_key("P-256", private=True)
        key.ensure_kid()
        signed = assertion(gw, app.client_id, key)  # a key the client never registered
        r = http.post(
            f"{gw.url}/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": signed,
            },
        )
        assert r.status_code == 401
        (ev,) = of_type(auditor, "token.denied", app.client_id)
        assert ev["data"]["reason"] == "invalid_client"

        # scope and grant refusals after a good secret name the client too
        r = http.post(
            f"{gw.url}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "admin"},
            auth=(app.client_id, app._secret),
        )
        assert r.status_code == 400
        r = http.post(
            f"{gw.url}/oauth/token",
            data={"grant_type": "password"},
            auth=(app.client_id, app._secret),
        )
        assert r.status_code == 400
        reasons = [e["data"]["reason"] for e in of_type(auditor, "token.denied", app.client_id)]
        assert sorted(reasons) == ["invalid_client", "invalid_scope", "unsupported_grant_type"]
        app.close()


def test_refused_bearer_tokens_are_audited_with_the_claimed_identity(
    gw: ThreadGateway,
) -> None:
    def b64(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    forged = ".".join(
        [b64({"alg": "ES256", "kid": "nope"}), b64({"client_id": "forger-x", "sub": "x"}), "c2ln"]
    )
    with gw.auditor() as auditor, http_from("127.0.0.5") as http:
        for token, actor in ((forged, "forger-x"), ("not-a-jwt", "unknown")):
            r = http.get(f"{gw.url}/v1/departments", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401
            found = [
                e
                for e in of_type(auditor, "auth.denied", actor)
                if e["data"]["address"] == "127.0.0.5"
            ]
            assert found and found[-1]["data"]["path"] == "/v1/departments"
            assert found[-1]["data"]["verified"] is False
        assert http.get(f"{gw.url}/v1/departments").status_code == 401


def test_registry_basic_auth_meets_the_same_lockout_as_the_token_endpoint(
    gw: ThreadGateway,
) -> None:
    """HTTP Basic on the registry checks a client secret too: wrong secrets lock the client
    out there as at /oauth/token (429 + Retry-After before any hashing), audited."""
    with gw.admin() as admin, gw.auditor() as auditor, http_from("127.0.0.5") as http:
        make_department(admin, "registry-guessed")
        victim = make_client(admin, gw.url, "registry-guessed", ["publisher"])
        url = f"{gw.url}/registry/subjects"
        wrong = [(victim.client_id, secrets.token_urlsafe(8)) for _ in range(12)]
        replies = [http.get(url, auth=a) for a in wrong]
        codes = [r.status_code for r in replies]
        assert set(codes) <= {401, 429}, codes
        # A few free failures (throttle.PAIR.free = 3), then locked: 429 before any hashing.
        assert codes[:4] == [401] * 4 and codes.count(429) >= 3, codes
        assert all(int(r.headers["retry-after"]) >= 1 for r in replies if r.status_code == 429)
        denied = of_type(auditor, "token.denied", victim.client_id)
        assert {e["data"]["endpoint"] for e in denied} == {"registry"}
        assert {"invalid_client", "throttled"} <= {e["data"]["reason"] for e in denied}
        assert any(
            victim.client_id in e["data"]["locked"] and e["data"]["endpoint"] == "registry"
            for e in events(auditor, type="token.lockout")
        )
        victim.close()
