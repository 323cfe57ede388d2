"""The console's routes: the page at /console, its static assets, and one HTML fragment per
view at /console/views/{name}, each authenticated with the same bearer tokens as REST.

The page itself holds no data and needs no token: its script asks for the token, keeps it in
sessionStorage for the browser session only, and sends it as an Authorization header with every
fragment request (never in a URL). A fragment request that fails answers in the one JSON error
shape, which the script shows as a message; 401 sends the browser back to sign-in.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from govern.auth import Action, Caller, is_allowed
from govern.console import views
from govern.errors import AuthError, Forbidden
from govern.gateway import Gateway

__all__ = ["mount_console"]

_HERE = Path(__file__).resolve().parent
_ENV = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters["b64"] = lambda data: base64.b64encode(data).decode("ascii")
# A log entry's data as the text it holds: a plain string, which autoescape escapes, so "<b>"
# in a logged value reads "<b>" (``tojson`` would show it as "\u003cb\u003e").
_ENV.filters["pretty_json"] = lambda value: json.dumps(value, indent=1, ensure_ascii=False)
# Scripts only from this origin: a value that slipped past escaping still could not run.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_bearer = HTTPBearer(auto_error=False)


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("a bearer token is required", details={"reason": "missing"})
    return await run_in_threadpool(_gateway(request).decider.authenticate, credentials.credentials)


ConsoleCaller = Annotated[Caller, Depends(_caller)]
router = APIRouter(prefix="/console", include_in_schema=False)


def _render(template: str, **context: Any) -> HTMLResponse:
    return HTMLResponse(_ENV.get_template(template).render(**context), headers=_HEADERS)


@router.get("")
async def page() -> HTMLResponse:
    """The console page: sign-in, navigation, and the place views are drawn in."""
    return _render("page.html")


@router.get("/views/nav")
def nav(caller: ConsoleCaller) -> HTMLResponse:
    allowed = views.allowed_views(caller)
    if not allowed:
        raise Forbidden(
            f"the console is for admins, stewards, auditors and compliance officers; role "
            f"{caller.role!r} has no view here",
            details={"role": caller.role, "action": Action.CONSOLE.value},
        )
    return _render("nav.html", caller=caller, views=allowed)


@router.get("/views/{name}")
def view(name: str, request: Request, caller: ConsoleCaller) -> HTMLResponse:
    context = views.load(_gateway(request), caller, name, request.query_params)
    return _render(
        f"{name}.html",
        caller=caller,
        may=lambda action: is_allowed(caller.role, Action(action)),
        **context,
    )


def mount_console(app: FastAPI) -> None:
    """Add the console's routes and static assets to the REST app."""
    app.include_router(router)
    app.mount(
        "/console/static",
        StaticFiles(directory=_HERE / "static", follow_symlink=False),
        name="console-static",
    )
