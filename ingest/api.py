"""What an import asks of the gateway, over its public HTTP API with the department's client.

Topic and schema lookups, registration under the subject's compatibility rules, topic
creation, and publishing Avro frames with an ``Idempotency-Key``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from exchange.client import ApiError, ExchangeClient
from ingest.errors import ImportFailed

AVRO_CONTENT_TYPE = "application/vnd.exchange.avro"


@dataclass(frozen=True)
class Published:
    count: int
    replayed: bool
    rejected: list[tuple[int, str]]  # index in the batch, reason (422: nothing was written)


def _detail(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict):
        text = body.get("detail") or body.get("message") or body.get("title") or ""
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            text = f"{text}: " + "; ".join(
                f"{e.get('path') or e.get('loc', '')} {e.get('reason') or e.get('msg', '')}"
                for e in errors[:5]
                if isinstance(e, dict)
            )
        return f"HTTP {exc.status}: {text}"
    return f"HTTP {exc.status}: {body}"


class GatewayApi:
    def __init__(self, client: ExchangeClient, *, retry_for_s: float = 60.0) -> None:
        self.client = client
        self.retry_for_s = retry_for_s

    def topic(self, topic: str) -> dict[str, Any] | None:
        r = self.client.request("GET", f"/v1/topics/{quote(topic, safe='')}")
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise ImportFailed(f"cannot read topic {topic}: HTTP {r.status_code} {r.text[:200]}")
        out: dict[str, Any] = r.json()
        return out

    def latest_schema(self, subject: str) -> dict[str, Any] | None:
        r = self.client.request(
            "GET", f"/registry/subjects/{quote(subject, safe='')}/versions/latest"
        )
        if r.status_code == 404:
            return None
        if r.status_code >= 400:
            raise ImportFailed(f"cannot read subject {subject}: HTTP {r.status_code}")
        schema: dict[str, Any] = json.loads(r.json()["schema"])
        return schema

    def register(self, subject: str, schema: dict[str, Any], has_versions: bool) -> int:
        """Register (or find) ``schema`` under ``subject``; refuse clearly if incompatible."""
        name = quote(subject, safe="")
        body = {"schema": json.dumps(schema, ensure_ascii=False)}
        if has_versions:
            r = self.client.request(
                "POST",
                f"/registry/compatibility/subjects/{name}/versions/latest",
                json=body,
                params={"verbose": "true"},
            )
            if r.status_code == 200 and not r.json().get("is_compatible", False):
                why = "; ".join(str(m) for m in r.json().get("messages", [])[:3])
                raise ImportFailed(
                    f"the source's columns do not make a compatible new version of {subject} "
                    f"(its compatibility rules refuse it): {why}"
                )
        r = self.client.request("POST", f"/registry/subjects/{name}/versions", json=body)
        if r.status_code != 200:
            data = r.json() if r.headers.get("content-type", "").endswith("json") else {}
            raise ImportFailed(
                f"cannot register the schema under {subject}: HTTP {r.status_code} "
                f"{data.get('message', r.text[:200])} (the client needs the registry:write role)"
            )
        return int(r.json()["id"])

    def create_topic(self, topic: str, subject: str, share_type: str) -> None:
        owner = topic.partition(".")[0]
        try:
            self.client.call(
                "POST",
                "/v1/topics",
                json={
                    "name": topic,
                    "owner": owner,
                    "value_subject": subject,
                    "share_type": share_type,
                    "title": topic,
                    "update_cycle": "batch",
                },
            )
        except ApiError as exc:
            hint = " (creating a topic needs the steward role)" if exc.status == 403 else ""
            raise ImportFailed(f"cannot create topic {topic}: {_detail(exc)}{hint}") from None

    def publish(self, topic: str, body: bytes, key: str) -> Published:
        """One batch, retried on transient failures with the same key until it is settled."""
        deadline = time.monotonic() + self.retry_for_s
        pause = 0.2
        path = f"/v1/topics/{quote(topic, safe='')}/records"
        headers = {"Content-Type": AVRO_CONTENT_TYPE, "Idempotency-Key": key}
        while True:
            r: httpx.Response | None = None
            try:
                r = self.client.request("POST", path, content=body, headers=headers)
            except httpx.TransportError as exc:  # a refused token (ApiError) is not retried
                status, text = 0, str(exc)
            else:
                status, text = r.status_code, r.text[:300]
            if r is not None and status == 200:
                count = len(r.json().get("offsets", []))
                return Published(count, r.headers.get("Idempotent-Replayed") == "true", [])
            if r is not None and status == 422:
                data = r.json()
                if data.get("code") == "invalid_records":
                    bad = [(int(e["index"]), str(e.get("reason", ""))) for e in data["errors"]]
                    return Published(0, False, bad)
            transient = status in (0, 429, 502, 503, 504) or (
                status == 409 and "in progress" in text
            )
            if not transient:
                raise ImportFailed(f"publish to {topic} refused: HTTP {status} {text}")
            if time.monotonic() > deadline:
                raise ImportFailed(
                    f"the gateway did not take a batch for {self.retry_for_s:.0f}s "
                    f"(last: HTTP {status or 'connection failed'}); rerun the same command "
                    "to continue from the checkpoint"
                )
            wait = pause
            if r is not None and status == 429:
                try:
                    wait = max(wait, float(r.headers.get("retry-after", "1")))
                except ValueError:
                    wait = 1.0
            time.sleep(wait)
            pause = min(pause * 2, 5.0)
