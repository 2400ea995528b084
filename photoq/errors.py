"""One small exception hierarchy; each class carries its HTTP status and error code.

Handlers and services raise these; the error middleware turns them into the contract's JSON body.
"""

from __future__ import annotations


class PhotoqError(Exception):
    status = 500
    code = "internal_error"
    default_message = "Something went wrong on the server."

    def __init__(self, message: str | None = None, *, code: str | None = None, headers: dict | None = None):
        super().__init__(message or self.default_message)
        if code:
            self.code = code
        self.headers = headers or {}

    @property
    def message(self) -> str:
        return str(self.args[0])


class BadRequest(PhotoqError):
    status = 400
    code = "bad_request"
    default_message = "The request is not valid."


class Unauthorized(PhotoqError):
    status = 401
    code = "unauthorized"
    default_message = "A valid admin token is required."


class Forbidden(PhotoqError):
    status = 403
    code = "forbidden"
    default_message = "This request is not allowed."


class NotFound(PhotoqError):
    status = 404
    code = "not_found"
    default_message = "There is nothing with that id."


class Conflict(PhotoqError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class PayloadTooLarge(PhotoqError):
    status = 413
    code = "too_large"
    default_message = "The upload is larger than this server accepts."


class UnsupportedMedia(PhotoqError):
    status = 415
    code = "unsupported_media_type"
    default_message = "The file is not a supported image."


class RateLimited(PhotoqError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests; slow down and try again shortly."


class Overloaded(PhotoqError):
    status = 503
    code = "overloaded"
    default_message = "The server is busy; try again shortly."


class DatabaseDown(PhotoqError):
    status = 503
    code = "database_unavailable"
    default_message = "The database cannot be reached right now; nothing was changed. Try again shortly."


class InsufficientStorage(PhotoqError):
    status = 507
    code = "insufficient_storage"
    default_message = "The server's disk is full; nothing was stored."
