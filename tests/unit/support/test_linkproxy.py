"""The link-fault proxy the store-and-forward and federation tests stand on: real sockets."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.linkproxy import LinkProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def link(echo: int) -> Iterator[LinkProxy]:
    with LinkProxy("127.0.0.1", echo) as proxy:
        yield proxy


def _connect(link: LinkProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", link.port), timeout=5)
    sock.settimeout(5)
    return sock


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_forwards_both_ways_and_counts(link: LinkProxy) -> None:
    with _connect(link) as sock:
        assert _roundtrip(sock, b"hello county") == b"hello county"
        payload = bytes(range(256)) * 1000
        assert _roundtrip(sock, payload) == payload
    assert link.stats.connections == 1
    assert link.stats.bytes_up == link.stats.bytes_down == 12 + 256_000


def test_half_close_still_delivers_the_answer(link: LinkProxy) -> None:
    with _connect(link) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(1024):
            got += chunk
    assert got == b"last words"


def test_cut_refuses_new_and_drops_existing_then_restore(link: LinkProxy) -> None:
    sock = _connect(link)
    assert _roundtrip(sock, b"before") == b"before"
    link.cut()
    assert link.is_cut
    with pytest.raises(OSError):  # reset by the cut, or EOF then a broken pipe
        sock.sendall(b"x")
        if not sock.recv(10):
            raise ConnectionResetError("closed")
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", link.port), timeout=2)
    link.restore()
    with _connect(link) as again:
        assert _roundtrip(again, b"after") == b"after"


def test_blackhole_keeps_connections_but_loses_everything(link: LinkProxy) -> None:
    sock = _connect(link)
    link.cut(mode="blackhole")
    sock.sendall(b"into the void")
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(10)
    fresh = _connect(link)  # accepted, but nothing comes back
    fresh.settimeout(0.5)
    fresh.sendall(b"x")
    with pytest.raises(TimeoutError):
        fresh.recv(10)
    link.restore()
    for s in (sock, fresh):  # blackholed connections are reset on restore
        s.settimeout(5)
        with pytest.raises(OSError):
            s.sendall(b"y")
            if not s.recv(10):
                raise ConnectionResetError("closed")
        s.close()
    with _connect(link) as again:
        assert _roundtrip(again, b"ok") == b"ok"


def test_delay_adds_latency_each_way(link: LinkProxy) -> None:
    with _connect(link) as sock:
        _roundtrip(sock, b"warm")
        started = time.monotonic()
        _roundtrip(sock, b"ping")
        fast = time.monotonic() - started
        link.delay(0.3)
        started = time.monotonic()
        _roundtrip(sock, b"ping")
        slow = time.monotonic() - started
    # 0.3 s up and 0.3 s down: a lower bound holds on any machine, loaded or not
    assert slow >= 0.6
    assert slow > fast


def test_throttle_bounds_the_rate(link: LinkProxy) -> None:
    link.throttle(100_000)
    payload = b"z" * 200_000
    with _connect(link) as sock:
        started = time.monotonic()
        assert _roundtrip(sock, payload) == payload
        took = time.monotonic() - started
    # 200 kB at 100 kB/s cannot arrive in under ~1.9 s (less the 10 kB burst allowance)
    assert took >= 1.8
    link.throttle(None)


def test_bad_settings_refused(link: LinkProxy) -> None:
    with pytest.raises(ValueError):
        link.delay(-1)
    with pytest.raises(ValueError):
        link.throttle(0)
