"""Webhook URL rules and signatures (pure)."""

from __future__ import annotations

import pytest

from dataplane.webhooks import check_webhook_url, sign, verify
from exchange.errors import InvalidInput


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.health.gov.example/x",
        "http://127.0.0.1:9/h",
        "http://localhost/h",
        "http://[::1]:8080/h",
    ],
)
def test_accepted_urls(url: str) -> None:
    check_webhook_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.health.gov.example/x",
        "ftp://a/b",
        "https:///x",
        "http://10.0.0.8/h",
        "not a url",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(InvalidInput):
        check_webhook_url(url)


def test_allow_list_restricts_hosts_but_not_loopback() -> None:
    allowed = [".gov.example"]
    check_webhook_url("https://hooks.health.gov.example/x", allowed)
    check_webhook_url("https://gov.example/x", allowed)
    check_webhook_url("http://127.0.0.1:9/h", allowed)
    for url in ("https://evil.example/x", "https://gov.example.evil.example/x"):
        with pytest.raises(InvalidInput):
            check_webhook_url(url, allowed)


def test_signature_binds_body_secret_and_time() -> None:
    header = sign("s3cret", b'{"a":1}', timestamp=1_700_000_000)
    assert verify("s3cret", b'{"a":1}', header, now=1_700_000_100)
    assert not verify("s3cret", b'{"a":2}', header, now=1_700_000_100)
    assert not verify("other", b'{"a":1}', header, now=1_700_000_100)
    assert not verify("s3cret", b'{"a":1}', header, now=1_700_000_000 + 301)  # replayed late
    assert not verify("s3cret", b'{"a":1}', "garbage", now=1_700_000_100)
