"""Webhook delivery: signed POSTs to a real local receiver, retries, dead letters; the
address rules (SSRF) at creation and at delivery; a bad target never stops the dispatcher."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from dataplane.webhooks import SIGNATURE_HEADER, verify
from exchange.client import ApiError
from tests.support.gateway import ThreadGateway
from tests.support.scenario import build, grant, person

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]


class Receiver:
    """A real HTTP endpoint on loopback that records what it receives."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.calls.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fast_retry_gateway(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadGateway]:
    gw = ThreadGateway(
        tmp_path_factory.mktemp("wh-home"),
        kafka_bootstrap,
        webhook_retry_base_s=0.05,
        webhook_allow_loopback=True,  # the receivers below listen on loopback
    ).start()
    yield gw
    gw.stop()


def wait_for(cond: Any, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return False


def test_webhook_receives_signed_records(fast_retry_gateway: ThreadGateway, tmp_path: Path) -> None:
    gw = fast_retry_gateway
    with gw.admin() as admin:
        s = build(admin, gw.url)
    grant(s, ["name"])
    rx = Receiver()
    try:
        sub = s.subscriber.call(
            "POST", "/v1/subscriptions", json={"topic": s.topic, "webhook": {"url": rx.url}}
        )
        secret = sub["webhook_secret"]
        s.publisher.publish(
            s.topic, [{"key": "a", "value": person(1)}, {"key": "b", "value": person(2)}]
        )
        assert wait_for(lambda: sum(b.count(b"record_id") for _, b in rx.calls) >= 2)
        headers, body = rx.calls[0]
        assert verify(secret, body, headers[SIGNATURE_HEADER])
        assert not verify("wrong-secret", body, headers[SIGNATURE_HEADER])
        assert b"Resident 1" in body and b"citizen_id" not in body
    finally:
        rx.close()
        s.close()


def counter(name: str, **labels: str) -> float:
    """A metric of the in-process gateway (ThreadGateway shares the test's registry)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_failing_webhook_ends_in_dead_letters(fast_retry_gateway: ThreadGateway) -> None:
    gw = fast_retry_gateway
    with gw.admin() as admin:
        s = build(admin, gw.url)
    grant(s, ["name"])
    rx = Receiver(status=500)
    retries = counter("exchange_webhook_retries_total")
    dead_letters = counter("exchange_webhook_dead_letters_total")
    try:
        sub = s.subscriber.call(
            "POST", "/v1/subscriptions", json={"topic": s.topic, "webhook": {"url": rx.url}}
        )
        # The dispatcher serves it (its supervisor counts live webhook workers every second).
        assert wait_for(lambda: counter("exchange_streams_open", kind="webhook") >= 1)
        s.publisher.publish(s.topic, [{"key": "a", "value": person(1)}])

        def dead() -> list[Any]:
            out: list[Any] = s.subscriber.call("GET", f"/v1/subscriptions/{sub['id']}/dead-letters")
            return out

        assert wait_for(lambda: len(dead()) == 1, timeout=30)
        assert len(rx.calls) == 6  # first try + 5 retries
        assert dead()[0]["last_error"] == "http_status:500"
        # Operators see it: /metrics counts the retries and the dead letter.
        assert counter("exchange_webhook_retries_total") - retries >= 5
        assert counter("exchange_webhook_dead_letters_total") - dead_letters >= 1
    finally:
        rx.close()
        s.close()


def test_plain_http_webhook_only_to_loopback(fast_retry_gateway: ThreadGateway) -> None:
    gw = fast_retry_gateway
    with gw.admin() as admin:
        s = build(admin, gw.url)
    grant(s, ["name"])
    with pytest.raises(ApiError) as exc:
        s.subscriber.call(
            "POST",
            "/v1/subscriptions",
            json={"topic": s.topic, "webhook": {"url": "http://example.org/hook"}},
        )
    assert exc.value.status == 422
    assert s.subscriber.call("GET", "/v1/subscriptions") == []
    s.close()


SSRF_URLS = [
    "http://127.0.0.1:8080/hook",
    "https://[::1]/hook",
    "https://localhost/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.5/hook",
    "https://100.64.0.1/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "https://2130706433/hook",
    "https://user:pw@hooks.example.org/hook",
    "https://hooks.example.org/hook\r\nX-Injected: 1",
    "https://hooks.example.org/a b",
    "https://hooks.example.org:70000/hook",
    "gopher://hooks.example.org/",
]


def test_ssrf_targets_are_refused_and_nothing_is_created(gateway: ThreadGateway) -> None:
    """The session gateway runs with the production defaults: no loopback switch."""
    with gateway.admin() as admin:
        s = build(admin, gateway.url)
    grant(s, ["name"])
    try:
        for url in SSRF_URLS:
            r = s.subscriber.request(
                "POST", "/v1/subscriptions", json={"topic": s.topic, "webhook": {"url": url}}
            )
            assert r.status_code == 422, (url, r.text)
            assert r.json()["code"] == "webhook_url_refused", url
        assert s.subscriber.call("GET", "/v1/subscriptions") == []
    finally:
        s.close()


def _resolves_inside(name: str) -> bool:
    try:
        infos = socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return any(not ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_global for i in infos)


def test_a_name_resolving_inside_is_refused_at_delivery(gateway: ThreadGateway) -> None:
    """Accepted at creation (a plain host name), but at delivery it resolves to a non-public
    address: nothing is sent, the page is dead-lettered as ``refused_address``."""
    name = socket.gethostname().lower()
    if not _resolves_inside(name):
        pytest.skip("this machine's host name does not resolve to a non-public address")
    rx = Receiver()
    with gateway.admin() as admin:
        s = build(admin, gateway.url)
    grant(s, ["name"])
    try:
        port = rx.server.server_address[1]
        sub = s.subscriber.call(
            "POST",
            "/v1/subscriptions",
            json={"topic": s.topic, "webhook": {"url": f"https://{name}:{port}/hook"}},
        )
        s.publisher.publish(s.topic, [{"key": "a", "value": person(1)}])

        def dead() -> list[Any]:
            out: list[Any] = s.subscriber.call("GET", f"/v1/subscriptions/{sub['id']}/dead-letters")
            return out

        assert wait_for(lambda: len(dead()) == 1, timeout=30)
        assert dead()[0]["last_error"] == "refused_address"
        assert rx.calls == []
    finally:
        rx.close()
        s.close()


def test_bad_targets_never_stop_the_dispatcher(fast_retry_gateway: ThreadGateway) -> None:
    """A URL stored before today's rules (CRLF) and one that fails at send time are each
    dead-lettered with a fixed reason; a healthy webhook beside them keeps receiving."""
    gw = fast_retry_gateway
    with gw.admin() as admin:
        s = build(admin, gw.url)
    grant(s, ["name"])
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    rx = Receiver()
    try:
        good = s.subscriber.call(
            "POST", "/v1/subscriptions", json={"topic": s.topic, "webhook": {"url": rx.url}}
        )
        refused = s.subscriber.call(
            "POST",
            "/v1/subscriptions",
            json={"topic": s.topic, "webhook": {"url": f"http://127.0.0.1:{dead_port}/h"}},
        )
        from exchange.secrets_store import seal

        legacy = gw.services.subscriptions.create(  # as a row written before the URL rules
            topic=s.topic,
            consumer=s.consumer,
            client_id=s.subscriber.client_id,
            fields=None,
            start="earliest",
            cursor={},
            webhook_url="https://a.example/\r\nX-Injected: 1",
            webhook_secret=seal(gw.services.master_key, b"s", "webhook-secret"),
        )
        s.publisher.publish(s.topic, [{"key": "a", "value": person(1)}])

        def errors(sub_id: str) -> list[str]:
            rows = s.subscriber.call("GET", f"/v1/subscriptions/{sub_id}/dead-letters")
            return [r["last_error"] for r in rows]

        assert wait_for(lambda: errors(legacy.id) == ["invalid_url"], timeout=30)
        assert wait_for(lambda: errors(refused["id"]) == ["unreachable"], timeout=30)
        assert wait_for(lambda: any(b"record_id" in b for _, b in rx.calls))
        assert errors(good["id"]) == []
        assert gw.services.webhooks.running
        s.publisher.publish(s.topic, [{"key": "b", "value": person(2)}])  # still serving
        assert wait_for(lambda: sum(b.count(b"record_id") for _, b in rx.calls) >= 2)
    finally:
        rx.close()
        s.close()
