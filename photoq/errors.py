"""One small exception hierarchy; each class carries its HTTP status and error code.

This module is the one table of HTTP statuses: services raise (or, for a refused file, return) these errors with a
specific code where it helps (`Conflict(..., code="album_busy")`), and the web layer answers with the class's status
and the contract's JSON body. HTTP errors that aiohttp raises itself are named by `error_for_status`.
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


class MethodNotAllowed(PhotoqError):
    status = 405
    code = "method_not_allowed"
    default_message = "This method is not allowed here."


class Gone(PhotoqError):
    status = 410
    code = "gone"
    default_message = "This is gone."


class PreconditionFailed(PhotoqError):
    status = 412
    code = "precondition_failed"
    default_message = "A precondition of this request does not hold."


class Locked(PhotoqError):
    status = 423
    code = "locked"
    default_message = "This is being changed by another request; try again in a moment."


class ChecksumMismatch(PhotoqError):
    status = 460  # tus 1.0, checksum extension
    code = "checksum_mismatch"
    default_message = "The bytes do not match their Upload-Checksum; they were discarded, send them again."


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


class InsufficientStorage(PhotoqError):
    status = 507
    code = "insufficient_storage"
    default_message = "The server's disk is full; nothing was stored."


def error_for_status(status: int) -> type[PhotoqError] | None:
    """The error class that answers with `status`, if photoq has one."""
    classes: list[type[PhotoqError]] = [PhotoqError, *PhotoqError.__subclasses__()]
    return next((cls for cls in classes if cls.status == status), None)
