"""Per-client rate limits on a gateway of its own with a tiny bucket: 429 + Retry-After."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import make_client, make_department
from tests.support.gateway import ThreadGateway

BURST = 5


@pytest.fixture(scope="module")
def limited(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ThreadGateway]:
    # One token per 100 s: nothing refills while the test runs, even on a loaded machine.
    gw = ThreadGateway(
        tmp_path_factory.mktemp("gw-limited"),
        kafka_bootstrap,
        rate_limit_per_second=0.01,
        rate_limit_burst=BURST,
    )
    yield gw.start()
    gw.stop()


def test_client_over_its_burst_gets_429_and_others_do_not(limited: ThreadGateway) -> None:
    with limited.admin() as admin:
        make_department(admin, "limited-dept")
        client = make_client(admin, limited.url, "limited-dept", ["subscriber"])
        token = client.token()
        headers = {"Authorization": f"Bearer {token}"}
        codes = [
            httpx.get(f"{limited.url}/v1/departments", headers=headers).status_code
            for _ in range(BURST)
        ]
        assert codes == [200] * BURST
        r = httpx.get(f"{limited.url}/v1/departments", headers=headers)
        assert r.status_code == 429
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 100
        # Another client's bucket is untouched.
        assert admin.request("GET", "/v1/departments").status_code == 200
        client.close()


def test_token_endpoint_is_limited_per_address(limited: ThreadGateway) -> None:
    codes = [
        httpx.post(
            f"{limited.url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("nobody", "wrong"),
        ).status_code
        for _ in range(BURST + 1)
    ]
    assert 429 in codes  # before the slow secret check, whoever the caller claims to be
    assert set(codes) <= {401, 429}


def test_sdk_waits_out_a_short_retry_after(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    gw = ThreadGateway(
        tmp_path_factory.mktemp("gw-sdk-limited"),
        kafka_bootstrap,
        rate_limit_per_second=1.0,
        rate_limit_burst=1,
    ).start()
    try:
        with gw.admin() as admin:
            first = admin.request("GET", "/v1/departments")
            second = admin.request("GET", "/v1/departments")  # 429 once, then waited out
            assert (first.status_code, second.status_code) == (200, 200)
            admin.max_rate_wait = 0.0
            assert admin.request("GET", "/v1/departments").status_code == 429
    finally:
        gw.stop()
