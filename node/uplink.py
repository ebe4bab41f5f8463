"""The node's calls to its league site's gateway, with the department's OAuth client."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from exchange.client import ApiError, ExchangeClient
from node.config import Credentials


class LinkDown(Exception):
    """The site could not be reached, or did not answer in time (nothing was learnt)."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Uplink:
    def __init__(self, url: str, credentials: Credentials, *, timeout: float) -> None:
        self.client = ExchangeClient(
            url, credentials.client_id, credentials.client_secret, timeout=timeout,
            max_rate_wait=0.0,  # the forwarder has its own backoff
        )

    def close(self) -> None:
        self.client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        try:
            r = self.client.request(method, path, **kwargs)
        except ApiError as exc:  # the token endpoint refused: credentials revoked or wrong
            return Answer(exc.status, exc.body, {})
        except httpx.HTTPError as exc:
            raise LinkDown(type(exc).__name__) from exc
        try:
            body = r.json() if r.content else None
        except ValueError:
            body = r.text[:500]
        return Answer(r.status_code, body, dict(r.headers))

    def publish(self, topic: str, body: bytes, content_type: str, key: str) -> Answer:
        return self.call(
            "POST",
            f"/v1/topics/{topic}/records",
            content=body,
            headers={
                "Content-Type": content_type,
                "Content-Encoding": "gzip",
                "Idempotency-Key": key,
            },
        )

    def pull(self, sub: str, cursor: str | None, max_records: int, wait_ms: int) -> Answer:
        params: dict[str, Any] = {"max": max_records, "wait_ms": wait_ms}
        if cursor:
            params["cursor"] = cursor
        return self.call("GET", f"/v1/subscriptions/{sub}/records", params=params)

    def commit(self, sub: str, cursor: str) -> Answer:
        return self.call("POST", f"/v1/subscriptions/{sub}/commit", json={"cursor": cursor})
