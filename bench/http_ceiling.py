"""The ceiling for small publishes on this machine: the least a FastAPI app can do per request.

One POST route that parses the JSON body and answers a small JSON object, served by uvicorn
with the gateway's server settings (uvloop and httptools when installed, as for the gateway),
no middleware, no token, no Kafka, no audit. ``publish_small`` drives it with the same load
generator in the same run, so its requests/s say how much of the goal the HTTP stack alone
leaves for the exchange on this machine.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from fastapi import FastAPI, Request

from exchange.kafka.broker import free_port

app = FastAPI()


@app.post("/v1/topics/{topic}/records")
async def publish(topic: str, request: Request) -> dict[str, object]:
    body = await request.json()
    return {"topic": topic, "count": len(body.get("records", []))}


@contextmanager
def serving(keep_alive_s: int = 75) -> Iterator[str]:
    """Run the ceiling app in its own process (as the gateway runs in its own); yield its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.http_ceiling:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--timeout-keep-alive",
            str(keep_alive_s),
        ]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(f"{url}/v1/topics/t/records", json={"records": []}, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the HTTP ceiling app did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
