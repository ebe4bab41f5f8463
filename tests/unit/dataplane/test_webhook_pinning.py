"""The dispatcher's POST goes to the address it checked, and failures read as a fixed word.

A real loopback receiver stands in for a department's endpoint; a fake resolver plays DNS, so
a name can be made to "resolve" anywhere without a network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dataplane.egress import EgressPolicy, IPAddress, Target
from dataplane.webhooks import REASONS, WebhookDispatcher

DEV = EgressPolicy(allow_loopback=True)


class Receiver:
    def __init__(self, status: int = 204) -> None:
        self.hosts: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.hosts.append(self.headers["Host"])
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.close()


class Dns:
    """Answers from a table and counts questions."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror("no such host")
        return [ipaddress.ip_address(a) for a in self.answers[host]]


def dispatcher(policy: EgressPolicy, dns: Dns) -> WebhookDispatcher:
    return WebhookDispatcher(
        store=None,  # type: ignore[arg-type]  # only the POST path is exercised
        loop=None,  # type: ignore[arg-type]
        master_key=b"k" * 32,
        retry_base_s=0.01,
        policy=policy,
        resolver=dns,
    )


def attempt(policy: EgressPolicy, dns: Dns, target: Target) -> str | None:
    async def run() -> str | None:
        d = dispatcher(policy, dns)
        try:
            return await d._attempt(target, "secret", b"{}")
        finally:
            await d.client.aclose()

    return asyncio.run(run())


def test_post_connects_to_the_checked_address_and_keeps_the_host_name(
    receiver: Receiver,
) -> None:
    dns = Dns({"hooks.test": ["127.0.0.1"]})
    target = Target(f"http://hooks.test:{receiver.port}/hook", "http", "hooks.test", receiver.port)
    assert attempt(DEV, dns, target) is None
    assert dns.asked == ["hooks.test"]  # resolved once, by us
    assert receiver.hosts == [f"hooks.test:{receiver.port}"]


def test_a_name_that_resolves_inside_is_refused_before_connecting(receiver: Receiver) -> None:
    target = Target(f"http://hooks.test:{receiver.port}/hook", "http", "hooks.test", receiver.port)
    for answers in (["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["10.1.2.3"]):
        assert attempt(EgressPolicy(), Dns({"hooks.test": answers}), target) == "refused_address"
    assert receiver.hosts == []


def test_failures_are_reported_without_network_details(receiver: Receiver) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens here now: "connection refused"
    unknown = Target("https://nowhere.test/h", "https", "nowhere.test", 443)
    refused = Target(f"http://hooks.test:{port}/h", "http", "hooks.test", port)
    dns = Dns({"hooks.test": ["127.0.0.1"]})
    assert attempt(DEV, dns, unknown) == "unreachable"
    assert attempt(DEV, dns, refused) == "unreachable"
    assert set(REASONS) >= {"unreachable", "refused_address", "timeout", "invalid_url"}


def test_receiver_errors_are_reported_as_a_status() -> None:
    rx = Receiver(status=503)
    try:
        target = Target(f"http://hooks.test:{rx.port}/h", "http", "hooks.test", rx.port)
        assert attempt(DEV, Dns({"hooks.test": ["127.0.0.1"]}), target) == "http_status:503"
    finally:
        rx.close()


def test_a_stored_url_that_breaks_todays_rules_is_never_sent() -> None:
    async def run() -> str | None:
        d = dispatcher(DEV, Dns({}))
        try:
            return await d._post_with_retries("https://a.example/\r\nX: y", "s", b"{}")
        finally:
            await d.client.aclose()

    assert asyncio.run(run()) == "invalid_url"


def test_the_next_checked_address_is_tried_when_one_cannot_connect(receiver: Receiver) -> None:
    dns = Dns({"hooks.test": ["::1", "127.0.0.1"]})  # nothing listens on ::1 at this port
    target = Target(f"http://hooks.test:{receiver.port}/hook", "http", "hooks.test", receiver.port)
    assert attempt(DEV, dns, target) is None
    assert dns.asked == ["hooks.test"] and receiver.hosts == [f"hooks.test:{receiver.port}"]
