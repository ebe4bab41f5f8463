"""A TCP proxy in front of one host:port that can cut, delay and throttle the link.

Tests put it between a client and a server to play a weak network link (a county office's
uplink, the link between two sites). It runs an asyncio loop in a daemon thread; every control
method is synchronous and thread-safe:

    with LinkProxy("127.0.0.1", gateway_port) as link:
        client = httpx.Client(base_url=link.url())
        link.cut()            # refuse new connections, drop the existing ones
        link.restore()
        link.delay(0.2)       # 200 ms added one way, each direction (throughput unchanged)
        link.throttle(64_000) # 64 kB/s per direction, shared by all connections
        link.throttle(None)

``cut(mode="blackhole")`` instead accepts connections and keeps existing ones open but forwards
nothing (packets lost, not refused), so clients run into their timeouts rather than errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TypeVar

_CHUNK = 64 * 1024
T = TypeVar("T")
CutMode = Literal["refuse", "blackhole"]


@dataclass
class LinkStats:
    """Counters since the proxy started (bytes forwarded, connections accepted)."""

    bytes_up: int = 0  # client -> server
    bytes_down: int = 0  # server -> client
    connections: int = 0
    refused_while_cut: int = 0


class _Bucket:
    """Token bucket for one direction of the link; ``None`` rate means unlimited."""

    def __init__(self) -> None:
        self.rate: float | None = None
        self._tokens = 0.0
        self._stamp = time.monotonic()

    def set_rate(self, rate: float | None) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._stamp = time.monotonic()

    async def take(self, n: int) -> None:
        while self.rate is not None:
            now = time.monotonic()
            # a burst of at most a tenth of a second of traffic
            self._tokens = min(self.rate / 10, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= n or (self._tokens >= self.rate / 10 > 0):
                self._tokens -= n
                return
            await asyncio.sleep(max(0.001, (min(n, self.rate / 10) - self._tokens) / self.rate))


class _Pipe:
    """One proxied connection: two one-way pumps with a latency queue each."""

    def __init__(
        self,
        proxy: LinkProxy,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        server: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.tasks: list[asyncio.Task[None]] = []
        self._open_pumps = 2

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [
            loop.create_task(self._pump(self.client[0], self.server[1], up=True)),
            loop.create_task(self._pump(self.server[0], self.client[1], up=False)),
        ]

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        sender = asyncio.get_running_loop().create_task(self._send(queue, writer, up=up))
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if self.proxy._blackhole:
                    continue  # lost on the wire
                queue.put_nowait((time.monotonic() + self.proxy._delay, data))
            queue.put_nowait((0.0, b""))  # EOF marker, after the queued data
            await sender
        except (ConnectionError, OSError):
            self.abort()  # a reset on one side resets the other
        finally:
            sender.cancel()
            self._open_pumps -= 1
            if self._open_pumps == 0:
                self.abort(graceful=True)

    async def _send(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter, *, up: bool
    ) -> None:
        bucket = self.proxy._bucket_up if up else self.proxy._bucket_down
        while True:
            due, data = await queue.get()
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
                return
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            for i in range(0, len(data), 4096):
                piece = data[i : i + 4096]
                await bucket.take(len(piece))
                if self.proxy._blackhole:
                    break
                # counted before the write: a peer that has the bytes sees them counted
                if up:
                    self.proxy.stats.bytes_up += len(piece)
                else:
                    self.proxy.stats.bytes_down += len(piece)
                writer.write(piece)
                await writer.drain()

    def abort(self, *, graceful: bool = False) -> None:
        for _, writer in (self.client, self.server):
            transport = writer.transport
            if not transport.is_closing():
                if graceful:
                    transport.close()  # flushes what is buffered
                else:
                    transport.abort()
        self.proxy._pipes.discard(self)


class LinkProxy:
    """Forward ``listen_host:port`` to ``target_host:target_port`` with link faults on demand."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = listen_port
        self.stats = LinkStats()
        self._delay = 0.0
        self._blackhole = False
        self._cut = False
        self._bucket_up = _Bucket()
        self._bucket_down = _Bucket()
        self._pipes: set[_Pipe] = set()
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name=f"linkproxy->{target_port}"
        )

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> LinkProxy:
        self._thread.start()
        self._call(self._listen)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> LinkProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.listen_host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self.port}"

    # -- faults --------------------------------------------------------------------------

    @property
    def is_cut(self) -> bool:
        return self._cut

    @property
    def active_connections(self) -> int:
        return len(self._pipes)

    def cut(self, mode: CutMode = "refuse") -> None:
        """Take the link down. ``refuse``: new connections are refused (nothing listens) and
        existing ones are reset. ``blackhole``: everything stays open but nothing gets through."""
        self._call(lambda: self._cut_now(mode))

    def restore(self) -> None:
        """Bring the link back: listen again on the same port; blackholed connections reset."""
        self._call(self._restore_now)

    def delay(self, seconds: float) -> None:
        """Added one-way latency in each direction (0 for none)."""
        if seconds < 0:
            raise ValueError("delay must be >= 0")
        self._delay = seconds

    def throttle(self, bytes_per_second: float | None) -> None:
        """Cap each direction at ``bytes_per_second`` (None: no cap)."""
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError("throttle must be > 0 or None")
        self._loop.call_soon_threadsafe(self._bucket_up.set_rate, bytes_per_second)
        self._loop.call_soon_threadsafe(self._bucket_down.set_rate, bytes_per_second)

    def heal(self) -> None:
        """No fault at all: restored, no delay, no throttle."""
        self.restore()
        self.delay(0.0)
        self.throttle(None)

    # -- inside the loop -----------------------------------------------------------------

    def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return asyncio.run_coroutine_threadsafe(_wrap(fn), self._loop).result(timeout=30)

    async def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.listen_host, self.port))
        self.port = sock.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=sock)

    async def _close_server(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=0.5)
            self._server = None

    async def _abort_all(self) -> None:
        for pipe in list(self._pipes):
            pipe.abort()
            for task in pipe.tasks:
                task.cancel()

    async def _cut_now(self, mode: CutMode) -> None:
        self._cut = True
        if mode == "blackhole":
            self._blackhole = True
            return
        await self._close_server()
        await self._abort_all()

    async def _restore_now(self) -> None:
        if self._blackhole:
            self._blackhole = False
            await self._abort_all()
        self._cut = False
        if self._server is None:
            await self._listen()

    async def _shutdown(self) -> None:
        await self._close_server()
        await self._abort_all()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut and not self._blackhole:
            self.stats.refused_while_cut += 1
            writer.transport.abort()
            return
        self.stats.connections += 1
        try:
            upstream = await asyncio.wait_for(asyncio.open_connection(*self.target), timeout=10)
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        pipe = _Pipe(self, (reader, writer), upstream)
        self._pipes.add(pipe)
        pipe.start()


async def _wrap(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()
