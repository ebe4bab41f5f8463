"""Bounded property-based fuzz of the whole HTTP API from its own OpenAPI document.

Schemathesis generates requests (valid and invalid) for every operation of ``/openapi.json``
and sends them over real HTTP to a gateway of this module's own (so a generated admin
action, e.g. a signing-key rotation, touches nobody else's state). Every answer must be
below 500 and match the schema the document declares for its status. Runs twice: with an
admin token and without credentials. Fixed seed (derandomized); a few examples per
operation in ``make test``, many more with ``EXCHANGE_FUZZ_LONG=1`` (or exactly
``EXCHANGE_FUZZ_EXAMPLES=N`` per operation and mode).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.support.gateway import ThreadGateway

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

LONG = os.environ.get("EXCHANGE_FUZZ_LONG") == "1"
EXAMPLES = int(os.environ.get("EXCHANGE_FUZZ_EXAMPLES") or (300 if LONG else 4))
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the fixed seed: same cases every run
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzz_gateway(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadGateway]:
    # Generous limits: the fuzz must find 5xx, not trip the rate limiter on itself.
    gw = ThreadGateway(tmp_path_factory.mktemp("fuzz-home"), kafka_bootstrap).start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway: ThreadGateway) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_gateway.url}/openapi.json")


@pytest.fixture(scope="module")
def admin_token(fuzz_gateway: ThreadGateway) -> Iterator[str]:
    with fuzz_gateway.admin() as admin:
        yield admin.token()


def fuzz(api_schema: Any, url: str, headers: dict[str, str]) -> list[str]:
    """Every operation, valid and invalid inputs; one line per operation that failed.

    (Schemathesis' pytest plugin does not support pytest 9 yet: the loop is ours.)
    """
    failures: list[str] = []
    session = requests.Session()
    for result in api_schema.get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                response = case.call(base_url=url, session=session, headers=headers, timeout=30)
                case.validate_response(response, checks=CHECKS)

            if mode is GenerationMode.NEGATIVE and not _negatable(op):
                continue
            try:
                run()
            except Unsatisfiable:
                continue  # nothing invalid can be said to this operation (no inputs)
            except BaseException as exc:  # one failure per operation and mode, then go on
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                failures.append(f"{op.label} [{mode.value}]: {_first_line(exc)}")
    session.close()
    return failures


def _negatable(op: Any) -> bool:
    """Invalid input exists: a body, or query/header parameters (a free-form string path
    parameter cannot be made invalid, and Hypothesis would search for it in vain)."""
    return bool(len(op.body) or len(op.query) or len(op.headers))


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return " | ".join(lines[:6])[:600]


def test_fuzz_as_admin(api_schema: Any, fuzz_gateway: ThreadGateway, admin_token: str) -> None:
    failures = fuzz(api_schema, fuzz_gateway.url, {"Authorization": f"Bearer {admin_token}"})
    assert not failures, "\n".join(failures)


def test_fuzz_anonymous(api_schema: Any, fuzz_gateway: ThreadGateway) -> None:
    failures = fuzz(api_schema, fuzz_gateway.url, {})
    assert not failures, "\n".join(failures)
