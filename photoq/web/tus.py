"""Resumable uploads over the tus 1.0 protocol under /api/uploads: core, creation, termination, expiration and
checksum. A finished upload takes a multipart part's road (limits, sniffing, dedup, photo + jobs); photoq/resumable.py
keeps the uploads' state.

The album is chosen at creation by the Upload-Metadata `album_id`; `filename` names the photo. The last PATCH
answers 204 with X-Photoq-Upload-Status (pending or duplicate) and X-Photoq-Photo-Id, or the contract's JSON error
when the file is refused; GET /api/uploads/{id} tells the outcome later as JSON.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from email.utils import formatdate

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .. import imaging
from ..errors import (
    BadRequest,
    Conflict,
    Gone,
    InsufficientStorage,
    Locked,
    NotFound,
    PayloadTooLarge,
    PhotoqError,
    PreconditionFailed,
    UnsupportedMedia,
    error_for_status,
)
from ..ingest import NOT_AN_IMAGE, FileOutcome, Ingest, Rejected, display_filename
from ..resumable import CHECKSUM_ALGORITHMS, ResumableUpload, ResumableUploads, Session, TakenOver
from ..storage import out_of_disk
from .api import parse_id, upload_batch
from .keys import CONFIG, INGEST, RESUMABLE
from .uploads import outcome_entry, outcome_status

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

TUS_VERSION = "1.0.0"
TUS_HEADERS = {"Tus-Resumable": TUS_VERSION}
EXTENSIONS = "creation,termination,expiration,checksum"
OFFSET_STREAM = "application/offset+octet-stream"
MAX_HEADER_INTEGER = 2**63 - 1
STALL_SECONDS = 120.0  # a PATCH whose body sends nothing for this long ends, keeping what arrived
LOCK_WAIT_SECONDS = 15.0
MAX_METADATA_CHARS = 8192


class BodyStalled(Exception):
    pass


def tus(handler):
    """Every answer of the protocol, errors included, carries Tus-Resumable."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except PhotoqError as exc:
            exc.headers = {**TUS_HEADERS, **exc.headers}
            raise
        response.headers.update(TUS_HEADERS)
        return response

    return wrapped


def check_version(request: web.Request) -> None:
    if request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise PreconditionFailed(f"Send Tus-Resumable: {TUS_VERSION}, the only tus version this server speaks.",
                                 code="unsupported_tus_version", headers={"Tus-Version": TUS_VERSION})


def header_integer(request: web.Request, name: str) -> int:
    raw = request.headers.get(name)
    if raw is None:
        raise BadRequest(f"The {name} header is required.", code=f"missing_{name.lower().replace('-', '_')}")
    if not raw.isascii() or not raw.isdigit() or int(raw) > MAX_HEADER_INTEGER:
        raise BadRequest(f"{name} must be a whole number of bytes.", code=f"bad_{name.lower().replace('-', '_')}")
    return int(raw)


def parse_metadata(raw: str) -> dict[str, str]:
    """Upload-Metadata: comma-separated `key base64(value)` pairs (a value may be left out)."""
    if len(raw) > MAX_METADATA_CHARS:
        raise BadRequest("Upload-Metadata is too long.", code="bad_metadata")
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, encoded = item.partition(" ")
        if not key.isascii() or not key.isprintable() or key in pairs or " " in encoded.strip():
            raise BadRequest("Upload-Metadata must be comma-separated 'key base64value' pairs with distinct keys.",
                             code="bad_metadata")
        try:
            pairs[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadRequest(f"The Upload-Metadata value of {key!r} is not base64 of UTF-8 text.",
                             code="bad_metadata") from None
    return pairs


def parse_checksum(raw: str | None) -> tuple[str, bytes] | None:
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise BadRequest("Upload-Checksum must use one of: " + ", ".join(CHECKSUM_ALGORITHMS) + ".",
                         code="bad_checksum_algorithm")
    try:
        return algorithm, base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise BadRequest("The Upload-Checksum value is not base64.", code="bad_checksum") from None


def http_date(when: float) -> str:
    return formatdate(when, usegmt=True)


def upload_url(upload: ResumableUpload) -> str:
    return f"/api/uploads/{upload.id}"


async def current_upload(request: web.Request) -> ResumableUpload:
    uploads = request.app[RESUMABLE]
    upload = await uploads.get(request.match_info["upload_id"])
    if upload is None:
        raise NotFound("There is no upload with that id (it may have been finished long ago, or terminated).")
    if uploads.expired(upload):
        if not uploads.session(upload.id).lock.locked():
            await uploads.remove(upload.id)
        raise Gone("This upload expired and its bytes were removed; start it again.", code="upload_expired")
    return upload


@contextlib.asynccontextmanager
async def writer_lock(session: Session):
    """One writer per upload. A newcomer stops a PATCH still reading a body (keeping the bytes it got): a client
    resuming after a dropped connection must not wait for the server to notice that the old one is dead."""
    if session.lock.locked() and session.reader is not None:
        session.reader.set_exception(TakenOver())
    try:
        async with asyncio.timeout(LOCK_WAIT_SECONDS):
            await session.lock.acquire()
    except TimeoutError:
        raise Locked("Another request is writing this upload; try again in a moment.", code="upload_locked") from None
    try:
        yield
    finally:
        session.lock.release()


async def body_chunks(content) -> AsyncIterator[bytes]:
    """The request body as it arrives; a body that sends nothing for STALL_SECONDS ends."""
    while True:
        try:
            async with asyncio.timeout(STALL_SECONDS):
                data = await content.readany()
        except TimeoutError:
            raise BodyStalled() from None
        if not data:
            return
        yield data


async def finish_upload(uploads: ResumableUploads, upload: ResumableUpload, ingest: Ingest) -> FileOutcome:
    """Turn a complete upload into a photo (or a refusal), as a multipart part would be, and keep the answer."""
    if not await uploads.has_bytes(upload):
        await uploads.remove(upload.id)
        raise NotFound("The bytes of this upload are gone (the server stopped while finishing it); "
                       "upload the file again.")
    outcome = await uploads.finish(upload, ingest)
    await record(uploads, upload, outcome)
    return outcome


async def record(uploads: ResumableUploads, upload: ResumableUpload, outcome: FileOutcome) -> None:
    await uploads.record_result(upload, outcome_status(outcome), outcome_entry(outcome))


def finished_headers(upload: ResumableUpload) -> dict:
    entry = upload.result or {}
    headers = {"Upload-Offset": str(upload.offset), "X-Photoq-Upload-Status": entry.get("status", "")}
    photo_id = entry.get("id", entry.get("duplicate_of"))
    if photo_id is not None:
        headers["X-Photoq-Photo-Id"] = str(photo_id)
    return headers


def refusal(upload: ResumableUpload) -> PhotoqError:
    """The JSON error that answered the last byte of a refused file, again (its client asks once more)."""
    entry = upload.result or {}
    kind = error_for_status(upload.result_status or 400) or BadRequest
    return kind(entry.get("message"), code=entry.get("error", "rejected"))


def status_body(upload: ResumableUpload) -> dict:
    body = {"upload_id": upload.id, "album_id": upload.album_id, "filename": upload.filename,
            "offset": upload.offset, "length": upload.length}
    if upload.result is None:
        body.update(status="uploading", expires_at=http_date(upload.expires_at))
    else:
        body.update(upload.result)
    return body


# -- the protocol --------------------------------------------------------------------------------------------------


@routes.route("OPTIONS", "/api/uploads")
@tus
async def discover(request: web.Request) -> web.Response:
    return web.Response(status=204, headers={
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": EXTENSIONS,
        "Tus-Max-Size": str(request.app[CONFIG].upload.max_file_bytes),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    })


@routes.post("/api/uploads")
@tus
async def create_upload(request: web.Request) -> web.Response:
    check_version(request)
    if "Upload-Defer-Length" in request.headers:
        raise BadRequest("Deferred lengths are not supported; send Upload-Length.", code="missing_upload_length")
    length = header_integer(request, "Upload-Length")
    metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
    if not metadata.get("album_id"):
        raise BadRequest("Upload-Metadata needs album_id, the album the photo goes into.", code="missing_album_id")
    album_id = parse_id(metadata["album_id"].strip(), "album_id")
    if not metadata.get("filename"):
        raise BadRequest("Upload-Metadata needs filename.", code="missing_filename")
    limits = request.app[CONFIG].upload
    if length == 0:
        raise BadRequest("The file is empty.", code="empty_file")
    if length > limits.max_file_bytes:
        raise PayloadTooLarge(f"The file is larger than the {limits.max_file_bytes} bytes allowed.")
    batch = upload_batch(request)
    await request.app[INGEST].check_can_accept(album_id, length, batch)
    upload = await request.app[RESUMABLE].create(album_id, display_filename(metadata["filename"]), length, batch)
    return web.Response(status=201, headers={"Location": upload_url(upload),
                                             "Upload-Expires": http_date(upload.expires_at)})


@routes.route("HEAD", "/api/uploads/{upload_id}")
@tus
async def upload_offset(request: web.Request) -> web.Response:
    check_version(request)
    upload = await current_upload(request)
    headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length), "Cache-Control": "no-store"}
    if upload.result is None:
        headers["Upload-Expires"] = http_date(upload.expires_at)
    return web.Response(status=200, headers=headers)


@routes.patch("/api/uploads/{upload_id}")
@tus
async def append_bytes(request: web.Request) -> web.Response:
    check_version(request)
    if request.content_type != OFFSET_STREAM:
        raise UnsupportedMedia(f"Send the bytes as {OFFSET_STREAM}.", code="bad_content_type")
    claimed = header_integer(request, "Upload-Offset")
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    uploads = request.app[RESUMABLE]
    ingest = request.app[INGEST]
    session = uploads.session((await current_upload(request)).id)
    async with writer_lock(session):
        upload = await current_upload(request)  # as the last writer left it
        if upload.result is not None:
            if claimed == upload.length and not request.content_length:
                if upload.result.get("status") == "rejected":
                    raise refusal(upload)
                return web.Response(status=204, headers=finished_headers(upload))
            raise Conflict("This upload is already finished.", code="offset_mismatch")
        if claimed != upload.offset:
            raise Conflict(f"Upload-Offset is {claimed} but the server has {upload.offset} bytes of this upload; "
                           "ask with HEAD and resume from there.", code="offset_mismatch")
        if request.content_length is not None and claimed + request.content_length > upload.length:
            raise PayloadTooLarge(f"The body goes beyond this upload's Upload-Length of {upload.length}.")
        ingest.keep_batch_open(upload.album_id, upload.batch)
        start = upload.offset
        if not upload.complete:
            ingest.check_disk(upload.length - upload.offset)
            await receive_body(request, session, upload, checksum)
        if start < imaging.SNIFF_BYTES and (upload.offset >= imaging.SNIFF_BYTES or upload.complete) \
                and not await uploads.head_is_image(upload):
            refused = Rejected(upload.filename, UnsupportedMedia(NOT_AN_IMAGE))
            await record(uploads, upload, refused)
            raise refused.error
        if upload.complete:
            outcome = await finish_upload(uploads, upload, ingest)
            if isinstance(outcome, Rejected):
                raise outcome.error
            return web.Response(status=204, headers=finished_headers(upload))
    return web.Response(status=204, headers={"Upload-Offset": str(upload.offset),
                                             "Upload-Expires": http_date(upload.expires_at)})


async def receive_body(request: web.Request, session: Session, upload: ResumableUpload,
                       checksum: tuple[str, bytes] | None) -> None:
    uploads = request.app[RESUMABLE]
    session.reader = request.content
    try:
        await uploads.append(upload, body_chunks(request.content), checksum, request.app[INGEST].check_disk)
    except TakenOver:
        raise Conflict(f"A newer request for this upload took over; {upload.offset} bytes are kept.",
                       code="upload_taken_over") from None
    except BodyStalled:
        raise BadRequest(f"The body stopped arriving; {upload.offset} bytes are kept. Resume from there.",
                         code="incomplete_body") from None
    except (HttpProcessingError, ConnectionError, asyncio.IncompleteReadError):
        raise BadRequest(f"The body ended early; {upload.offset} bytes are kept. Resume from there.",
                         code="incomplete_body") from None
    except OSError as exc:
        if out_of_disk(exc):
            raise InsufficientStorage(f"The server's disk is full; {upload.offset} bytes of this upload are kept."
                                      ) from None
        raise
    finally:
        session.reader = None


@routes.delete("/api/uploads/{upload_id}")
@tus
async def terminate_upload(request: web.Request) -> web.Response:
    check_version(request)
    uploads = request.app[RESUMABLE]
    upload = await current_upload(request)
    async with writer_lock(uploads.session(upload.id)):
        await uploads.remove(upload.id)
    return web.Response(status=204)


@routes.get("/api/uploads/{upload_id}", allow_head=False)
async def upload_status(request: web.Request) -> web.Response:
    """Not part of tus: where an upload stands, and once finished the entry a multipart upload would have listed.
    A complete upload that could not be finished yet (a full disk, a restart) is finished now."""
    uploads = request.app[RESUMABLE]
    upload = await current_upload(request)
    if upload.complete and upload.result is None:
        async with writer_lock(uploads.session(upload.id)):
            upload = await current_upload(request)
            if upload.result is None:
                await finish_upload(uploads, upload, request.app[INGEST])
    return web.json_response(status_body(upload), headers={"Cache-Control": "no-store"})
