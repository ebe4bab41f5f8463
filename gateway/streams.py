"""Server-Sent-Events streams: a cap per client, and a fair share of the worker threads.

- At most ``per_client`` concurrent streams per client id; one more is refused with 429. A
  slot is held for the life of the HTTP response (:class:`HeldStream` releases it however the
  response ends: finished, failed or the client gone), so the count cannot leak.
- A stream's heavy steps (catch-up reads, rendering, encoding a page of events) run in worker
  threads, and each client may have only ``work_per_client`` of them in flight at once: one
  client's many streams queue behind each other, not in front of every other caller.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import HTTPException
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from exchange import metrics

WORK_PER_CLIENT = 2


class StreamSlots:
    def __init__(self, per_client: int, *, work_per_client: int = WORK_PER_CLIENT) -> None:
        if per_client < 1 or work_per_client < 1:
            raise ValueError("stream limits must be at least 1")
        self.per_client = per_client
        self.work_per_client = work_per_client
        self._open: dict[str, int] = {}
        self._work: dict[str, asyncio.Semaphore] = {}
        self._lock = threading.Lock()

    def open(self, client_id: str) -> int:
        with self._lock:
            return self._open.get(client_id, 0)

    def acquire(self, client_id: str) -> Callable[[], None]:
        """Take a slot or raise 429; returns the (idempotent) release."""
        with self._lock:
            held = self._open.get(client_id, 0)
            if held >= self.per_client:
                raise HTTPException(
                    status_code=429,
                    detail=f"too many open event streams: at most {self.per_client} per client; "
                    "close one before opening another",
                    headers={"Retry-After": "5"},
                )
            self._open[client_id] = held + 1
        metrics.STREAMS_OPEN.labels("sse").inc()
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                metrics.STREAMS_OPEN.labels("sse").dec()
                left = self._open.get(client_id, 1) - 1
                if left > 0:
                    self._open[client_id] = left
                else:
                    self._open.pop(client_id, None)
                    self._work.pop(client_id, None)

        return release

    @asynccontextmanager
    async def work(self, client_id: str) -> AsyncIterator[None]:
        """Hold one of the client's worker-thread shares (on the event loop)."""
        with self._lock:
            sem = self._work.get(client_id)
            if sem is None:
                sem = self._work[client_id] = asyncio.Semaphore(self.work_per_client)
        async with sem:
            yield


class HeldStream(StreamingResponse):
    """A streaming response that gives its slot back when it ends, however it ends."""

    def __init__(self, content: Any, *, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
