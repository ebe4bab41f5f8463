"""Per-client SSE stream slots and the per-client share of worker threads (pure)."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import HTTPException

from gateway.streams import StreamSlots


def test_cap_is_per_client_and_refusal_is_429() -> None:
    slots = StreamSlots(2)
    a1, _a2 = slots.acquire("a"), slots.acquire("a")
    with pytest.raises(HTTPException) as exc:
        slots.acquire("a")
    assert exc.value.status_code == 429 and "at most 2" in str(exc.value.detail)
    slots.acquire("b")  # another client is not affected
    a1()
    slots.acquire("a")  # a released slot can be taken again
    assert slots.open("a") == 2 and slots.open("b") == 1


def test_release_is_idempotent() -> None:
    slots = StreamSlots(1)
    release = slots.acquire("a")
    release()
    release()  # a second call (e.g. response end after an error path) must not free more
    other = slots.acquire("a")
    with pytest.raises(HTTPException):
        slots.acquire("a")
    other()
    assert slots.open("a") == 0


def test_one_client_gets_a_bounded_share_of_worker_threads() -> None:
    slots = StreamSlots(50, work_per_client=2)
    running = {"a": 0, "b": 0}
    peak = {"a": 0, "b": 0}

    async def job(client: str) -> None:
        async with slots.work(client):
            running[client] += 1
            peak[client] = max(peak[client], running[client])
            await asyncio.sleep(0.01)
            running[client] -= 1

    async def main() -> None:
        await asyncio.gather(*(job("a") for _ in range(20)), *(job("b") for _ in range(2)))

    asyncio.run(main())
    assert peak == {"a": 2, "b": 2}


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        StreamSlots(0)
