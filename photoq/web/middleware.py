"""Middlewares: errors to the contract's JSON, security headers, and authentication with CSRF protection."""

from __future__ import annotations

import logging
import time
from urllib.parse import quote, urlsplit

from aiohttp import web

from ..config import RateLimitSettings
from ..db import database_unavailable
from ..errors import (
    Forbidden,
    InsufficientStorage,
    Overloaded,
    PayloadTooLarge,
    PhotoqError,
    RateLimited,
    Unauthorized,
    error_for_status,
)
from ..ratelimit import RateLimiter, retry_after_seconds
from ..storage import out_of_disk
from .keys import AUTH_KIND, CONFIG, CREDENTIALS, LOGIN_THROTTLE, SESSION, SESSIONS

log = logging.getLogger("photoq.web")

SESSION_COOKIE = "photoq_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# The app's manifest, service worker and offline page hold nothing private; browsers fetch the manifest without
# cookies.
PUBLIC_PATHS = {"/healthz", "/login", "/favicon.ico", "/manifest.webmanifest", "/sw.js", "/offline"}
SHARE_TARGET = "/share"  # POSTed by the phone's share sheet: it cannot carry our CSRF token
PUBLIC_PREFIXES = ("/static/",)
METRICS_PATH = "/metrics"  # public only with [metrics] public = true
DATABASE_RETRY_AFTER_SECONDS = 5


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path == "/api" or request.path == METRICS_PATH


def error_response(exc: PhotoqError) -> web.Response:
    return web.json_response({"error": exc.code, "message": exc.message}, status=exc.status, headers=exc.headers)


@web.middleware
async def errors_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except PhotoqError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400 or not is_api(request):
            raise
        if exc.status == 413:
            return error_response(PayloadTooLarge("The request body is larger than this endpoint accepts."))
        message = exc.text if exc.text and not exc.text.startswith(str(exc.status)) else exc.reason
        kind = error_for_status(exc.status)
        return web.json_response(
            {"error": kind.code if kind else "http_error", "message": f"{message}."},
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")},
        )
    except Exception as exc:
        if database_unavailable(exc):  # the database is restarting or unreachable: a pause, not a fault
            log.warning("database unavailable during %s %s: %s", request.method, request.path, exc)
            return error_response(Overloaded(
                "The database cannot be reached right now; nothing was changed. Try again shortly.",
                code="database_unavailable", headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}))
        if isinstance(exc, ConnectionError):  # the client went away
            raise
        if out_of_disk(exc):  # the database or a file could not grow: the contract's 507, not a crash
            log.error("disk full during %s %s: %s", request.method, request.path, exc)
            return error_response(InsufficientStorage())
        log.exception("unhandled error in %s %s", request.method, request.path)
        if not is_api(request):
            raise
        return error_response(PhotoqError())


SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
}


@web.middleware
async def security_headers_middleware(request: web.Request, handler):
    """Outermost, so that error responses and raised redirects carry the headers too."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        for name, value in SECURITY_HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.content_type == "text/html":
        for name, value in PAGE_HEADERS.items():
            response.headers.setdefault(name, value)
    return response


FILE_ROUTES = {"/api/photos/{id}/file"}
# A resumable upload may be sent in many small PATCH requests (with a HEAD after each break): cheap, like files.
RESUMABLE_ROUTE = "/api/uploads/{upload_id}"
FREE_PATHS = {"/healthz"}


def request_cost(request: web.Request, settings: RateLimitSettings) -> float:
    """Tokens a request spends: nothing for health checks and static files, little for image files."""
    if request.path in FREE_PATHS or request.path.startswith(PUBLIC_PREFIXES):
        return 0.0
    resource = request.match_info.route.resource
    if request.method in ("GET", "HEAD") and resource is not None and resource.canonical in FILE_ROUTES:
        return settings.file_request_cost
    if request.method in ("PATCH", "HEAD") and resource is not None and resource.canonical == RESUMABLE_ROUTE:
        return settings.file_request_cost
    return 1.0


def ratelimit_middleware(settings: RateLimitSettings, clock=time.monotonic):
    """Per-client token buckets keyed by the peer address; over the limit -> 429 with Retry-After.

    Placed before authentication, so that floods of unauthenticated requests are limited too."""
    limiter = RateLimiter(settings.capacity, settings.refill_per_second, clock=clock)

    @web.middleware
    async def ratelimit(request: web.Request, handler):
        if settings.enabled:
            wait = limiter.check(request.remote or "", request_cost(request, settings))
            if wait:
                seconds = retry_after_seconds(wait)
                raise RateLimited(f"Too many requests from your address; try again in {seconds} s.",
                                  headers={"Retry-After": str(seconds)})
        return await handler(request)

    return ratelimit


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@web.middleware
async def auth_middleware(request: web.Request, handler):
    if is_public(request.path) or (request.path == METRICS_PATH and request.app[CONFIG].metrics.public):
        return await handler(request)
    bearer = bearer_token(request)
    if bearer is not None:
        throttle = request.app[LOGIN_THROTTLE]
        address = request.remote or ""
        check_login_allowed(request)
        if request.app[CREDENTIALS].token_matches(bearer):
            throttle.succeeded(address)
            request[AUTH_KIND] = "bearer"
            return await handler(request)
        throttle.failed(address)  # a wrong token is a guess, as at the login form
    session = await request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        request[AUTH_KIND] = "session"
        request[SESSION] = session
        if request.method == "POST" and request.path == SHARE_TARGET:
            check_same_origin(request)  # it only parks the files; adding them to an album is a CSRF-checked form
        elif request.method not in SAFE_METHODS:
            await check_csrf(request)
        return await handler(request)
    if is_api(request):
        raise Unauthorized("A valid admin token is required (Authorization: Bearer <token>).")
    target = request.path_qs if request.method == "GET" else SHARE_TARGET if request.path == SHARE_TARGET else "/"
    raise web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")


def check_login_allowed(request: web.Request) -> None:
    """429 with Retry-After while the client's address is locked out after too many wrong tokens or codes."""
    wait = request.app[LOGIN_THROTTLE].retry_after(request.remote or "")
    if wait:
        raise RateLimited(f"Too many wrong login attempts from your address; try again in {wait} s.",
                          code="login_locked", headers={"Retry-After": str(wait)})


def check_same_origin(request: web.Request) -> None:
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise_csrf(request)


async def check_csrf(request: web.Request) -> None:
    """Cookie-authenticated writes must come from our own pages: same origin, and carrying the session's CSRF token."""
    check_same_origin(request)
    candidate = request.headers.get(CSRF_HEADER)
    if candidate is None and request.content_type == "application/x-www-form-urlencoded":
        field = (await request.post()).get(CSRF_FIELD)
        candidate = field if isinstance(field, str) else None
    if not request.app[SESSIONS].csrf_matches(request[SESSION], candidate):
        raise_csrf(request)


def raise_csrf(request: web.Request) -> None:
    if is_api(request):
        raise Forbidden("The request was refused: its CSRF token is missing or wrong. Reload the page and retry.",
                          code="csrf_failed") from None
    raise web.HTTPForbidden(text="The form was refused: its CSRF token is missing or wrong. Reload the page and retry.")
