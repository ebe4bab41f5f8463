"""The web console: server-rendered pages for people (stewards, security officers,
developers, administrators), served by the gateway under ``/console``.

How to add a page
-----------------
1. A route in ``gateway/console/routes/<persona>.py`` (an ``APIRouter(prefix="/console/...",
   include_in_schema=False)``, listed in :data:`ROUTERS` below)::

       @router.get("/steward/inbox")
       @access("steward")                       # the same declaration as the API route
       async def inbox(request: Request,
                       me: Principal = Depends(console_require("steward")),
                       svc: Services = Depends(services)) -> Response:
           items = await run_in_threadpool(svc.agreements.pending_for, me)   # same services
           return render(request, "steward/inbox.html", items=items)

   ``console_require`` (or ``console_principal`` for any signed-in person) gives the same
   :class:`Principal` a bearer token gives the API; pass it to the same services, which
   apply the same ownership rules. Forms POST with ``form: FormData =
   Depends(checked_form)`` (CSRF checked and audited) and answer ``redirect(request, url)``.
2. A template ``templates/<persona>/<page>.html`` extending ``base.html``; every text goes
   through ``t("key")``, keys in ``messages/en/<persona>.json`` and
   ``messages/zh-CN/<persona>.json`` (a unit test keeps the two in step). Dates:
   ``<time datetime="{{ iso }}">{{ iso }}</time>`` — ``static/console.js`` shows them in the
   browser's zone and language. No inline script or style (the CSP refuses it): behaviour
   goes in an ES module under ``static/`` loaded with ``<script type="module" src=...>``.
3. A menu entry in :mod:`gateway.console.nav` and a request per route in
   ``tests/support/matrix.py`` (``Req(..., console=True)``): the matrix then calls the page
   as every role through a real session.
4. A browser test using ``tests/support/console.py`` (``console_browser``, ``sign_in``,
   ``axe_check``, ``screenshot``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import Response

from gateway.console.routes import (
    account,
    admin,
    audit,
    developer,
    home,
    people,
    signin,
    steward,
)
from gateway.console.session import ConsoleRefused, SignInRequired
from gateway.console.web import redirect, render
from gateway.denials import audit_denial
from gateway.routes import authorize

ROUTERS = (
    authorize.router,
    home.router,
    home.entrances,
    signin.router,
    account.router,
    audit.router,
    steward.router,
    admin.router,
    people.router,
    developer.router,
)


def install(app: FastAPI) -> None:
    """Mount the console's routes and its answers to sign-in and refusals."""

    async def _sign_in(request: Request, exc: Exception) -> Response:
        # Like a bearer-less API call: recorded (access.denied), fail closed without the log.
        assert isinstance(exc, SignInRequired)
        if not await audit_denial(request, 401, "sign_in_required"):
            return render(request, "error.html", 503, message="error.unavailable")
        return redirect(request, f"/console/sign-in?next={exc.next_path}")

    async def _refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ConsoleRefused)
        return render(request, "error.html", 403, message=f"error.{exc.reason}")

    app.add_exception_handler(SignInRequired, _sign_in)
    app.add_exception_handler(ConsoleRefused, _refused)
    for router in ROUTERS:
        app.include_router(router)
