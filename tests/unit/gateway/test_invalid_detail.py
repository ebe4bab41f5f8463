"""A 422's summary names the offending fields instead of hiding them."""

from __future__ import annotations

from gateway.errors import invalid_detail


def test_names_fields_and_counts_the_rest() -> None:
    errors = [{"path": f"body.f{i}", "reason": "Field required"} for i in range(5)]
    assert invalid_detail(errors) == (
        "request body or parameters are invalid: body.f0: Field required; "
        "body.f1: Field required; body.f2: Field required (and 2 more)"
    )
    assert invalid_detail([{"path": "", "reason": "bad"}]).endswith(": request: bad")
