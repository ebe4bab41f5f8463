"""``POST /v1/federation/witness``: another site asks us to cosign its audit checkpoint.

Called by the other site's gateway on a schedule (:class:`audit.cosigning.WitnessScheduler`),
authenticated with that site's identity key (``Authorization: Site <jwt>``,
:mod:`exchange.federation.sitecall`); no client of ours may call it, whatever its roles. The
body is a C2SP tlog-witness add-checkpoint request in JSON: the signed checkpoint note, the
size we cosigned last (``old_size``) and the RFC 9162 consistency proof from it (base64
hashes). Answers: 200 ``{note, witness}`` with our cosignature line added; 409
``witness_size_mismatch`` with our ``size`` (prove from there); 409 ``witness_refused``
(rollback, fork, failed proof: an alarm, audited); 422 ``bad_checkpoint`` (bad signature,
malformed proof).
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from audit.cosigning import PATH, answer_request
from audit.witness import MAX_PROOF
from exchange.errors import ExchangeError, Forbidden
from exchange.federation.sitecall import SCHEME, BadSiteAssertion, verify
from exchange.federation.sites import Federation, decode_public_key
from gateway.access import SITE, access
from gateway.auth import principal, services
from gateway.container import Services
from gateway.problem import Unauthenticated

router = APIRouter(tags=["federation"])


class WitnessIn(BaseModel):
    checkpoint: str = Field(min_length=1, max_length=8192, description="C2SP signed note")
    old_size: int = Field(ge=0, le=2**63 - 1, description="The size we cosigned last (0: none)")
    proof: list[str] = Field(
        default_factory=list,
        max_length=MAX_PROOF,
        description="RFC 9162 consistency proof from old_size, base64 hashes",
    )


async def calling_site(request: Request, svc: Services = Depends(services)) -> str:
    """The site whose identity key signed the request's assertion (401 otherwise); a bearer
    token of ours gets 403, anonymous 401 — both audited (the bearer check, gateway.denials)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != SCHEME.lower():
        principal(request, svc)
        raise Forbidden("only another site, with its site identity key, asks for a cosignature")
    fed = Federation(svc.settings.resolved_home)
    body = await request.body()

    def key_of(name: str) -> Ed25519PublicKey | None:
        try:
            return decode_public_key(fed.site(name).public_key)
        except ExchangeError:
            return None

    try:
        here = fed.name()
        site = verify(
            value.strip(),
            key_of=key_of,
            audience=here,
            method=request.method,
            path=request.url.path,
            body=body,
        )
    except BadSiteAssertion as exc:
        raise Unauthenticated(exc.message, code=exc.code) from None
    except ExchangeError:  # no federation identity here: no site can be known
        raise Unauthenticated(
            "this gateway is not a federation site", code=BadSiteAssertion.code
        ) from None
    svc.rate_limiter.enforce(f"site:{site}")
    return site


@router.post(PATH, summary="Cosign another site's audit checkpoint (C2SP tlog-witness)")
@access(SITE)
async def witness_checkpoint(
    body: WitnessIn, site: str = Depends(calling_site), svc: Services = Depends(services)
) -> dict[str, Any]:
    fed = Federation(svc.settings.resolved_home)
    note = await run_in_threadpool(
        answer_request, fed, svc.audit, site, body.checkpoint, body.old_size, body.proof
    )
    return {"note": note, "witness": fed.name()}
