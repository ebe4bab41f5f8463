"""Inputs the API fuzz (test_api_fuzz.py) found answered with 5xx, kept as regressions."""

from __future__ import annotations

import json

import pytest

from exchange.client import ExchangeClient
from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

HUGE = 5081233116669784208777794289664  # beyond any database integer


@pytest.mark.parametrize("suffix", ["", "/schema", "/versions", "/subjects?deleted=true"])
def test_schema_id_beyond_the_integer_range_is_not_found(
    admin: ExchangeClient, suffix: str
) -> None:
    for sid in (HUGE, 2**31, 0, -1):
        r = admin.request("GET", f"/registry/schemas/ids/{sid}{suffix}")
        assert r.status_code == 404, (sid, r.text)
        assert r.json()["error_code"] == 40403


def test_imported_id_beyond_the_integer_range_is_refused(
    gateway: ThreadGateway, admin: ExchangeClient
) -> None:
    schema = json.dumps({"type": "record", "name": "R", "fields": []})
    r = admin.request(
        "POST",
        "/registry/subjects/fuzz-regression-value/versions",
        json={"schema": schema, "id": HUGE},
    )
    assert r.status_code == 422, r.text
    assert (
        admin.request("GET", "/registry/subjects/fuzz-regression-value/versions").status_code == 404
    )
