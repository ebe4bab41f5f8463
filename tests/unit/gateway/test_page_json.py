"""A pull page is encoded by orjson: it must read back exactly as the stdlib encoding every
JSON answer used before, and what orjson refuses goes to that encoder."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

from gateway.routes.subscriptions import page_json


def _page(value: dict[str, Any]) -> dict[str, Any]:
    item = {
        "record_id": "health.t/0/7",
        "key": "k-é",
        "value": value,
        "partition": 0,
        "offset": 7,
        "timestamp": 1_700_000_000_000,
        "schema_id": 3,
        "redacted": {"ssn": "shredded"},
    }
    return {"records": [item, {**item, "key": None}], "withheld": 2, "cursor": "c.x"}


def test_a_page_reads_back_as_the_stdlib_encoding_did() -> None:
    value = {
        "name": '李娜 🙂 "quoted" \\ \n\t\u2028',
        "amount": 1234.5,
        "tiny": 5e-324,
        "big": 1e300,
        "neg": -0.0,
        "income": -(2**63),
        "ok": True,
        "none": None,
        "nested": {"xs": [1, 2.5, "NaN"], "m": {"k": []}},
    }
    page = _page(value)
    body = page_json(page)
    assert json.loads(body) == json.loads(JSONResponse(page).body) == page
    assert "李娜".encode() in body  # UTF-8 as it is, like ensure_ascii=False


def test_what_orjson_refuses_goes_to_the_stdlib_encoder() -> None:
    page = _page({"huge": 2**70})  # beyond 64 bits: orjson refuses it
    assert json.loads(page_json(page)) == page
