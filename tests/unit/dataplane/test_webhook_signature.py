"""Webhook signatures (pure)."""

from __future__ import annotations

from dataplane.webhooks import sign, verify


def test_signature_binds_body_secret_and_time() -> None:
    header = sign("s3cret", b'{"a":1}', timestamp=1_700_000_000)
    assert verify("s3cret", b'{"a":1}', header, now=1_700_000_100)
    assert not verify("s3cret", b'{"a":2}', header, now=1_700_000_100)
    assert not verify("other", b'{"a":1}', header, now=1_700_000_100)
    assert not verify("s3cret", b'{"a":1}', header, now=1_700_000_000 + 301)  # replayed late
    assert not verify("s3cret", b'{"a":1}', "garbage", now=1_700_000_100)
