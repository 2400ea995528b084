"""Logging in and out of the web UI: the token becomes an HttpOnly, SameSite=Strict session cookie."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from .keys import CREDENTIALS
from .middleware import SESSION_COOKIE
from .templating import render

routes = web.RouteTableDef()

SESSION_MAX_AGE = 90 * 24 * 3600


def safe_next(raw: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw or urlsplit(raw).netloc:
        return "/"
    return raw


def start_session(request: web.Request, response: web.StreamResponse) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        request.app[CREDENTIALS].session_value,
        max_age=SESSION_MAX_AGE,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    credentials = request.app[CREDENTIALS]
    target = safe_next(request.query.get("next"))
    token = request.query.get("token")
    if token is not None:
        if credentials.token_matches(token):
            # Redirect at once so the token leaves the address bar and the browser history.
            response = web.HTTPSeeOther(target)
            start_session(request, response)
            raise response
        return render_login(request, target, "That login link is not valid. Paste the admin token instead.", 401)
    if credentials.session_matches(request.cookies.get(SESSION_COOKIE)):
        raise web.HTTPSeeOther(target)
    return render_login(request, target, None, 200)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    next_field = form.get("next")
    target = safe_next(next_field if isinstance(next_field, str) else None)
    token = form.get("token")
    if isinstance(token, str) and request.app[CREDENTIALS].token_matches(token.strip()):
        response = web.HTTPSeeOther(target)
        start_session(request, response)
        raise response
    return render_login(request, target, "That token is not right. Check it and try again.", 401)


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    # Photo files are cached for good by URL; after logging out, this browser keeps none of them.
    response.headers["Clear-Site-Data"] = '"cache"'
    raise response


def render_login(request: web.Request, target: str, error: str | None, status: int) -> web.Response:
    return render(request, "login.html", {"next": target, "error": error}, status=status)
