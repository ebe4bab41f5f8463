"""Webhook delivery: signed POSTs to a real local receiver, retries, dead letters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

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
        tmp_path_factory.mktemp("wh-home"), kafka_bootstrap, webhook_retry_base_s=0.05
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


def test_failing_webhook_ends_in_dead_letters(fast_retry_gateway: ThreadGateway) -> None:
    gw = fast_retry_gateway
    with gw.admin() as admin:
        s = build(admin, gw.url)
    grant(s, ["name"])
    rx = Receiver(status=500)
    try:
        sub = s.subscriber.call(
            "POST", "/v1/subscriptions", json={"topic": s.topic, "webhook": {"url": rx.url}}
        )
        s.publisher.publish(s.topic, [{"key": "a", "value": person(1)}])

        def dead() -> list[Any]:
            out: list[Any] = s.subscriber.call("GET", f"/v1/subscriptions/{sub['id']}/dead-letters")
            return out

        assert wait_for(lambda: len(dead()) == 1, timeout=30)
        assert len(rx.calls) == 6  # first try + 5 retries
        assert dead()[0]["last_error"] == "HTTP 500"
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
    s.close()
