"""Logging in and out of the web UI: server-side sessions in an HttpOnly, SameSite=Strict cookie (see sessions.py).

Three ways in: the admin token pasted into the login form (POST /login), a one-time login code from a printed link
(GET /login?code=...), or an existing session. GET /login?token=... is refused, whatever the token: a link that
carries the admin token leaves it in the browser's history (and in any proxy's access log), so such links are no
longer printed nor honoured; the page says how to get a one-time link instead. Wrong tokens and codes count against
the client's address (login_throttle.py): after a few, 429 with Retry-After and growing delays.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from ..errors import RateLimited
from .keys import CREDENTIALS, LOGIN_THROTTLE, SESSION, SESSIONS
from .middleware import SESSION_COOKIE, check_login_allowed
from .templating import render

routes = web.RouteTableDef()

TOKEN_LINK_REFUSED = ("Login links that contain the admin token are no longer accepted: they leave the token in your "
                      "browser's history. Run `photoq login-url` for a one-time link, or paste the token below.")
CODE_REFUSED = "That login link has expired or was already used. Run `photoq login-url` for a new one."


def safe_next(raw: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw or urlsplit(raw).netloc:
        return "/"
    return raw


async def logged_in(request: web.Request, target: str) -> web.HTTPSeeOther:
    """A redirect to `target` that starts a new session (its cookie set on the redirect)."""
    request.app[LOGIN_THROTTLE].succeeded(request.remote or "")
    sessions = request.app[SESSIONS]
    session = await sessions.start()
    response = web.HTTPSeeOther(target)
    response.set_cookie(SESSION_COOKIE, session.id, max_age=sessions.cookie_max_age, httponly=True,
                        samesite="Strict", secure=request.secure, path="/")
    return response


def failed_login(request: web.Request, target: str, message: str) -> web.Response:
    request.app[LOGIN_THROTTLE].failed(request.remote or "")
    return render_login(request, target, message, 401)


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    target = safe_next(request.query.get("next"))
    if "token" in request.query:
        return render_login(request, target, TOKEN_LINK_REFUSED, 400)
    code = request.query.get("code")
    if code is not None:
        if locked := locked_out(request, target):
            return locked
        if await request.app[SESSIONS].redeem_login_code(code):
            # Redirect at once: the address bar and the page the browser shows no longer carry the (spent) code.
            raise await logged_in(request, target)
        return failed_login(request, target, CODE_REFUSED)
    if await request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE)) is not None:
        raise web.HTTPSeeOther(target)
    return render_login(request, target, None, 200)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    raw_next = form.get("next")
    target = safe_next(raw_next if isinstance(raw_next, str) else None)
    if locked := locked_out(request, target):
        return locked
    token = form.get("token")
    if isinstance(token, str) and request.app[CREDENTIALS].token_matches(token.strip()):
        raise await logged_in(request, target)
    return failed_login(request, target, "That token is not right. Check it and try again.")


def locked_out(request: web.Request, target: str) -> web.Response | None:
    try:
        check_login_allowed(request)
    except RateLimited as exc:
        response = render_login(request, target, exc.message, 429)
        response.headers.update(exc.headers)
        return response
    return None


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is not None:
        await request.app[SESSIONS].end(session.id)
    raise logged_out()


@routes.post("/logout/everywhere")
async def logout_everywhere(request: web.Request) -> web.StreamResponse:
    """Ends every web session, on every browser and device (API clients with the token are not affected)."""
    await request.app[SESSIONS].end_all()
    raise logged_out()


def logged_out() -> web.HTTPSeeOther:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    # Photo files are cached for good by URL; after logging out, this browser keeps none of them.
    response.headers["Clear-Site-Data"] = '"cache"'
    return response


def render_login(request: web.Request, target: str, error: str | None, status: int) -> web.Response:
    response = render(request, "login.html", {"next": target, "error": error}, status=status)
    # Its address may hold a spent code or a refused token: not even our own static files get it as a referrer.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
