"""A small Python SDK for the gateway: token fetch/refresh, publish, pull and stream.

from exchange.client import ExchangeClient
with ExchangeClient("http://127.0.0.1:8080", "civil-affairs-ab12", "secret") as c:
    c.publish("civil-affairs.births", [{"key": "k1", "value": {...}}])

with ExchangeClient.from_profile("civil-publisher") as c:  # saved by `exchange login`
    ...

Errors: ``ApiError`` (the gateway answered 4xx/5xx; ``str()`` is readable, ``field_errors``
lists a 422's per-field problems), ``AuthenticationFailed`` (the token endpoint refused the
credentials); network failures surface as ``httpx.TransportError``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx


class ApiError(Exception):
    """The gateway answered with an error. ``str()`` is one readable line whatever the body's
    shape (problem+json, OAuth error object, Confluent registry error, or plain text);
    ``field_errors`` lists a 422's per-field problems as ``(path, reason)``."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"HTTP {status}: {self.detail}")

    @property
    def code(self) -> str | None:
        b = self.body if isinstance(self.body, dict) else {}
        code = b.get("code") or b.get("error") or b.get("error_code")
        return str(code) if code is not None else None

    @property
    def detail(self) -> str:
        b = self.body
        if isinstance(b, dict):
            for key in ("detail", "error_description", "message", "error"):
                if b.get(key):
                    return str(b[key])
            return _REASONS.get(self.status, "error")
        text = str(b or "").strip()
        return text[:300] if text else _REASONS.get(self.status, "error")

    @property
    def field_errors(self) -> list[tuple[str, str]]:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        if not isinstance(errors, list):
            return []
        out = []
        for e in errors:
            if not isinstance(e, dict):
                continue
            path = str(e.get("path") or "")
            if "index" in e:  # a publish batch: which record, then where in it
                path = f"record {e['index']}" + (f" {path}" if path else "")
            out.append((path, str(e.get("reason", ""))))
        return out


class AuthenticationFailed(ApiError):
    """The token endpoint refused the client's credentials (wrong id or secret, disabled
    client, or a scope beyond its roles)."""

    def __init__(self, status: int, body: Any, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(status, body)


_REASONS = {
    400: "bad request",
    401: "not authenticated",
    403: "forbidden",
    404: "not found",
    409: "conflict",
    413: "request too large",
    422: "invalid input",
    429: "rate limited",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
}


class ExchangeClient:
    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str | None = None,
        timeout: float = 30.0,
        max_rate_wait: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self.max_rate_wait = max_rate_wait  # longest Retry-After (s) honoured by waiting
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_profile(cls, name: str | None = None, **kwargs: Any) -> ExchangeClient:
        """A client for a profile saved by ``exchange login`` (``name``, else
        ``$EXCHANGE_PROFILE``, else the default one), with ``EXCHANGE_URL``/
        ``EXCHANGE_CLIENT_ID``/``EXCHANGE_CLIENT_SECRET`` overriding its fields."""
        from exchange.profiles import profile_from_env

        p = profile_from_env(name)
        return cls(p.url, p.client_id, p.client_secret, **kwargs)

    def __enter__(self) -> ExchangeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- tokens --------------------------------------------------------------------------
    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() > self._expires - 30:
                data = {"grant_type": "client_credentials"}
                if self.scope:
                    data["scope"] = self.scope
                r = self.http.post("/oauth/token", data=data, auth=(self.client_id, self._secret))
                if r.status_code != 200:
                    raise AuthenticationFailed(r.status_code, _body(r), self.client_id)
                body = r.json()
                self._token = body["access_token"]
                self._expires = time.time() + int(body["expires_in"])
            return self._token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}", **kwargs.pop("headers", {})}
        r = self.http.request(method, path, headers=headers, **kwargs)
        if r.status_code == 401:  # token expired or revoked meanwhile: refresh once
            self._token = None
            headers["Authorization"] = f"Bearer {self.token()}"
            r = self.http.request(method, path, headers=headers, **kwargs)
        wait = _retry_after(r)
        if wait is not None and wait <= self.max_rate_wait:  # over our rate: wait, retry once
            time.sleep(wait)
            r = self.http.request(method, path, headers=headers, **kwargs)
        return r

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.request(method, path, **kwargs)
        if r.status_code >= 400:
            raise ApiError(r.status_code, _body(r))
        return r.json() if r.content else None

    # -- data ----------------------------------------------------------------------------
    def publish(
        self, topic: str, records: list[dict[str, Any]], idempotency_key: str | None = None
    ) -> Any:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.call(
            "POST", f"/v1/topics/{topic}/records", json={"records": records}, headers=headers
        )

    def subscribe(
        self, topic: str, start: str = "earliest", fields: list[str] | None = None
    ) -> str:
        body: dict[str, Any] = {"topic": topic, "start": start}
        if fields is not None:
            body["fields"] = fields
        return str(self.call("POST", "/v1/subscriptions", json=body)["id"])

    def poll(self, subscription: str, max: int = 500, wait_ms: int = 1000) -> Any:
        return self.call(
            "GET",
            f"/v1/subscriptions/{subscription}/records",
            params={"max": max, "wait_ms": wait_ms},
        )

    def commit(self, subscription: str, cursor: str) -> Any:
        return self.call(
            "POST", f"/v1/subscriptions/{subscription}/commit", json={"cursor": cursor}
        )

    def records(self, subscription: str, wait_ms: int = 1000) -> Iterator[dict[str, Any]]:
        """Iterate records forever, committing each page after it has been consumed."""
        while True:
            page = self.poll(subscription, wait_ms=wait_ms)
            yield from page["records"]
            if page["records"]:
                self.commit(subscription, page["cursor"])

    def stream(
        self, subscription: str, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[dict[str, Any]]:
        """Server-Sent Events: yields {"id", "event", "data"} with ``data`` parsed as JSON."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.token()}", "Accept": "text/event-stream"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            with self.http.stream(
                "GET", f"/v1/subscriptions/{subscription}/stream", headers=headers, timeout=timeout
            ) as r:
                if r.status_code == 401 and attempt == 1:  # expired or revoked: refresh once
                    r.read()
                    self._token = None
                    continue
                if r.status_code != 200:
                    r.read()
                    raise ApiError(r.status_code, _body(r))
                yield from _events(r)
                return


def _events(r: httpx.Response) -> Iterator[dict[str, Any]]:
    """The Server-Sent Events of a streamed response, ``data`` parsed as JSON."""
    event: dict[str, Any] = {}
    for line in r.iter_lines():
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        event[name] = event[name] + "\n" + value if name in event else value


def _retry_after(r: httpx.Response) -> float | None:
    if r.status_code != 429:
        return None
    try:
        return max(0.0, float(r.headers.get("retry-after", "")))
    except ValueError:
        return None


def _body(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text
