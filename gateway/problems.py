"""The error answers as the OpenAPI document declares them, so clients (and the API fuzz in
tests/e2e/test_api_fuzz.py) can rely on their shape: RFC 9457 problem+json for the API, the
OAuth error object for /oauth/*, Confluent's error body for /registry/*.
"""

from __future__ import annotations

from typing import Any

PROBLEM_MEDIA = "application/problem+json"
REGISTRY_MEDIA = "application/vnd.schemaregistry.v1+json"

PROBLEM: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "Stable machine-readable error code"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}
OAUTH_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
}
REGISTRY_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error_code", "message"],
    "properties": {"error_code": {"type": "integer"}, "message": {"type": "string"}},
}

_WHY = {
    400: "Bad request",
    401: "Missing, invalid or expired credentials",
    403: "The caller may not do this",
    404: "Not found (also when the caller may not know it exists)",
    405: "Method not allowed",
    409: "Conflicts with the current state",
    413: "Body too large",
    415: "Unsupported media type",
    422: "Invalid input; nothing was written",
    429: "Over the rate limit; see Retry-After",
    503: "A dependency (Kafka, database, audit log, KMS) is unavailable; nothing was written",
}
_API = (401, 403, 404, 409, 413, 422, 429, 503)


def _responses(
    statuses: tuple[int, ...], media: str, schema: dict[str, Any]
) -> dict[int | str, Any]:
    return {s: {"description": _WHY[s], "content": {media: {"schema": schema}}} for s in statuses}


API_ERRORS = _responses(_API, PROBLEM_MEDIA, PROBLEM)


# /oauth/* answer OAuth error objects (also when throttling failed client authentication);
# the admin route beside them (bearer-authenticated) answers problem+json like the rest.
def _either(status: int) -> dict[str, Any]:
    return {
        "description": _WHY[status],
        "content": {
            "application/json": {"schema": OAUTH_ERROR},
            PROBLEM_MEDIA: {"schema": PROBLEM},
        },
    }


OAUTH_ERRORS = {
    **_responses((403, 422, 503), PROBLEM_MEDIA, PROBLEM),
    **_responses((400,), "application/json", OAUTH_ERROR),
    401: _either(401),
    429: _either(429),
}
REGISTRY_ERRORS = _responses(
    (401, 403, 404, 409, 413, 415, 422, 429, 503), REGISTRY_MEDIA, REGISTRY_ERROR
)
