"""Receiving uploads: stream each multipart part to a temp file while hashing it, enforce the limits as the bytes
arrive, sniff and probe the header (no decode), store the original content-addressed, and create photo + jobs.

Request-level failures (too many files, a full disk, a broken body) store nothing at all; part-level failures
(too large, not an image, corrupt) reject that part only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import aiofiles
from aiohttp import BodyPartReader, MultipartReader
from aiohttp.http_exceptions import HttpProcessingError

from . import imaging
from .config import Settings
from .errors import (
    BadRequest,
    Conflict,
    InsufficientStorage,
    NotFound,
    Overloaded,
    PayloadTooLarge,
)
from .models import NewPhoto
from .queue import JobQueue
from .storage import Storage, out_of_disk

log = logging.getLogger(__name__)

# Bytes read, hashed and written per step. 1 MiB rather than 256 KiB: each step costs a hop to aiofiles' thread, and
# with a quarter of the hops a 5 MB upload is answered ~15% sooner (`make bench`, ingest). ~1 MiB of memory per upload.
CHUNK_BYTES = 1024 * 1024
DISK_CHECK_EVERY_BYTES = 16 * 1024 * 1024
MAX_FILENAME_CHARS = 255
BATCH_IDLE_SECONDS = 120.0  # a batch whose last request is older than this is over
NOT_AN_IMAGE = "The file is not a supported image (JPEG, PNG, WebP, GIF, TIFF, HEIC or AVIF)."
# Bidirectional overrides and isolates can make "gpj.exe" display as "exe.jpg".
BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


@dataclass
class Rejection:
    status: int
    code: str
    message: str


@dataclass
class Received:
    temp: Path
    sha256: str
    size: int
    probe: imaging.Probe


def display_filename(raw: str | None) -> str:
    """A client's filename made safe to show: last path component, no control or bidi characters, bounded.

    Browsers percent-escape quotes and line breaks in multipart filenames and some clients escape everything,
    so escapes are decoded first (before looking for path separators).
    """
    raw = raw or ""
    if "%" in raw:
        try:
            raw = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            pass
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        c for c in name if c not in BIDI_CONTROLS and unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co")
    ).strip()
    if name in ("", ".", ".."):
        name = "upload"
    return name[:MAX_FILENAME_CHARS]


def request_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request is larger than the {limit} bytes this server accepts at once.",
                           code="request_too_large")


def disk_full() -> InsufficientStorage:
    return InsufficientStorage("The server's disk filled up during the upload; nothing was stored.")


def rejection_for(exc: imaging.ImageError) -> Rejection:
    if isinstance(exc, imaging.TooManyPixels):
        return Rejection(413, exc.code, str(exc))
    if isinstance(exc, imaging.UnsupportedImage):
        return Rejection(415, exc.code, str(exc))
    return Rejection(400, exc.code, str(exc))


async def probe_file(path: Path, max_pixels: int) -> imaging.Probe | Rejection:
    """The header of a fully received file, probed in a thread (no decode)."""
    try:
        return await asyncio.to_thread(imaging.probe, str(path), max_pixels)
    except imaging.ImageError as exc:
        return rejection_for(exc)


class RequestBody:
    """Reads one upload request's parts, keeping the byte count of that request."""

    def __init__(self, storage: Storage, limits, check_disk):
        self.storage = storage
        self.limits = limits
        self.check_disk = check_disk
        self.bytes_read = 0

    async def next_part(self, reader: MultipartReader):
        try:
            return await reader.next()
        except HttpProcessingError:  # a part's headers: invalid characters, too long, a duplicate
            raise BadRequest("The multipart body is malformed (a part's headers are invalid or too long).",
                             code="bad_multipart") from None
        except (ValueError, AssertionError, KeyError) as exc:
            raise BadRequest(f"The multipart body is malformed ({exc}).", code="bad_multipart") from None

    async def receive_part(self, part) -> Received | Rejection:
        if not isinstance(part, BodyPartReader):
            await self._drain(part)
            return Rejection(400, "bad_multipart", "Nested multipart bodies are not accepted.")
        if part.name != "file":
            await self._drain(part)
            return Rejection(400, "unexpected_field", "Only parts named 'file' are accepted.")
        if not part.filename:
            await self._drain(part)
            return Rejection(400, "missing_filename", "Each file part needs a filename.")
        temp = self.storage.new_upload_path()
        keep = False
        try:
            outcome = await self._stream_to_file(part, temp)
            if isinstance(outcome, Rejection):
                return outcome
            sha256, size = outcome
            probe = await probe_file(temp, self.limits.max_pixels)
            if isinstance(probe, Rejection):
                return probe
            keep = True
            return Received(temp, sha256, size, probe)
        finally:
            if not keep:
                await self.storage.remove_uploads([temp])

    async def _stream_to_file(self, part: BodyPartReader, temp: Path) -> tuple[str, int] | Rejection:
        hasher = hashlib.sha256()
        size = 0
        head = b""
        next_disk_check = DISK_CHECK_EVERY_BYTES
        try:
            async with aiofiles.open(temp, "wb") as out:
                while chunk := await self._read_chunk(part):
                    size += len(chunk)
                    if size > self.limits.max_file_bytes:
                        await self._drain(part)
                        return Rejection(413, "too_large",
                                         f"The file is larger than the {self.limits.max_file_bytes} bytes allowed.")
                    if len(head) < imaging.SNIFF_BYTES:
                        head += chunk[: imaging.SNIFF_BYTES - len(head)]
                        if len(head) >= imaging.SNIFF_BYTES and imaging.sniff(head) is None:
                            await self._drain(part)
                            return Rejection(415, "unsupported_media_type", NOT_AN_IMAGE)
                    hasher.update(chunk)
                    await out.write(chunk)
                    if size >= next_disk_check:
                        next_disk_check += DISK_CHECK_EVERY_BYTES
                        self.check_disk(0)
        except OSError as exc:
            if out_of_disk(exc):
                raise disk_full() from None
            raise
        if size == 0:
            return Rejection(400, "empty_file", "The file is empty.")
        return hasher.hexdigest(), size

    async def _read_chunk(self, part) -> bytes:
        chunk = await part.read_chunk(CHUNK_BYTES)
        self.bytes_read += len(chunk)
        if self.bytes_read > self.limits.max_request_bytes:
            raise request_too_large(self.limits.max_request_bytes)
        return chunk

    async def _drain(self, part) -> None:
        if isinstance(part, MultipartReader):
            while (inner := await self.next_part(part)) is not None:
                await self._drain(inner)
            return
        while await self._read_chunk(part):
            pass


class Ingest:
    def __init__(self, queue: JobQueue, storage: Storage, settings: Settings):
        self.queue = queue
        self.db = queue.db
        self.storage = storage
        self.settings = settings
        self.limits = settings.upload
        self._open_batches: dict[int, tuple[str, float]] = {}  # album id -> (batch, when its last request came)

    async def check_can_accept(self, album_id: int, content_length: int | None, batch: str | None = None) -> None:
        """Everything decided before a byte of the body is read.

        `batch` names a set of upload requests that belong together (the web UI sends a batch of files a few at a
        time): with block_while_processing, an album busy with its own open batch still takes that batch's files.
        """
        if await self.db.get_album(album_id) is None:
            raise NotFound("There is no album with that id.")
        if content_length is not None and content_length > self.limits.max_request_bytes:
            raise request_too_large(self.limits.max_request_bytes)
        if self.limits.block_while_processing:
            if not self._continues_open_batch(album_id, batch) and await self.db.album_has_unfinished_jobs(album_id):
                raise Conflict("This album is still processing earlier uploads; try again when it is done.",
                               code="album_busy")
            self.keep_batch_open(album_id, batch)
        if not await self.queue.has_room():
            raise Overloaded("The processing queue is full; try again in a minute.", headers={"Retry-After": "60"})
        self.check_disk(content_length or 0)

    def keep_batch_open(self, album_id: int, batch: str | None) -> None:
        """Called as each request of a batch starts and ends, so a long upload does not let its batch expire."""
        if batch is not None and self.limits.block_while_processing:
            self._open_batches[album_id] = (batch, time.monotonic())

    def _continues_open_batch(self, album_id: int, batch: str | None) -> bool:
        open_batch = self._open_batches.get(album_id)
        return (
            batch is not None and open_batch is not None and open_batch[0] == batch
            and time.monotonic() - open_batch[1] < BATCH_IDLE_SECONDS
        )

    def check_disk(self, incoming: int) -> None:
        if self.storage.free_bytes() - incoming < self.settings.storage.min_free_bytes:
            raise InsufficientStorage("The server's disk is nearly full, so the upload was not accepted.")

    async def receive(self, reader: MultipartReader, album_id: int) -> tuple[int, dict]:
        """Read every part, then store and queue what was accepted. Returns (HTTP status, response body)."""
        entries: list[dict] = []
        received: dict[int, Received] = {}  # index in entries -> the file
        body = RequestBody(self.storage, self.limits, self.check_disk)
        try:
            part_count = 0
            while True:
                part = await body.next_part(reader)
                if part is None:
                    break
                part_count += 1
                if part_count > self.limits.max_files_per_request:
                    raise PayloadTooLarge(
                        f"At most {self.limits.max_files_per_request} files can be sent in one request.",
                        code="too_many_files",
                    )
                outcome = await body.receive_part(part)
                filename = display_filename(part.filename if isinstance(part, BodyPartReader) else None)
                if isinstance(outcome, Rejection):
                    entries.append({"filename": filename, "status": "rejected", "error": outcome.code,
                                    "message": outcome.message, "_status": outcome.status})
                else:
                    received[len(entries)] = outcome
                    entries.append({"filename": filename})
            if not entries:
                raise BadRequest("The request has no file parts; send one or more parts named 'file'.",
                                 code="no_files")
            if received:
                await self._store_and_queue(album_id, entries, received)
        finally:
            await self.storage.remove_uploads(r.temp for r in received.values())
        return self._response(entries)

    async def receive_file(self, album_id: int, path: Path, filename: str, sha256: str, size: int) -> tuple[int, dict]:
        """A whole file that arrived another way (a finished resumable upload) takes a multipart part's road from
        here: probe, dedup, store the original, photo + jobs. Returns (HTTP status, the entry an upload response
        would list for it). The file may have been moved into the store; what is left there is the caller's."""
        entry: dict = {"filename": display_filename(filename)}
        probe = await probe_file(path, self.limits.max_pixels) if size else Rejection(400, "empty_file",
                                                                                         "The file is empty.")
        if isinstance(probe, Rejection):
            entry.update(status="rejected", error=probe.code, message=probe.message)
            return probe.status, entry
        await self._store_and_queue(album_id, [entry], {0: Received(path, sha256, size, probe)})
        return (202 if entry["status"] == "pending" else 200), entry

    async def _store_and_queue(self, album_id: int, entries: list[dict], received: dict[int, Received]) -> None:
        first_index_of: dict[str, int] = {}
        for index, item in received.items():
            first_index_of.setdefault(item.sha256, index)
        unique = {index: received[index] for index in first_index_of.values()}
        relpaths = {i: self.storage.original_relpath(r.sha256, r.probe.format) for i, r in unique.items()}

        staged_ids = await self.db.stage_files([(relpaths[i], unique[i].sha256) for i in unique], self.queue.clock())
        try:
            for index, item in unique.items():
                try:
                    await self.storage.store_original(item.temp, relpaths[index])
                except OSError as exc:
                    if out_of_disk(exc):
                        raise disk_full() from None
                    raise
            photos = [self._new_photo(entries[i]["filename"], item) for i, item in unique.items()]
            try:
                results = await self.queue.add_photos(album_id, photos, staged_ids)
            except LookupError:
                raise NotFound("The album was deleted during the upload.") from None
        except BaseException:
            await self.db.unstage(staged_ids, self.storage.remove_relpaths)
            raise

        photo_id_of: dict[str, int] = {}
        for (index, item), (photo_id, duplicate_of) in zip(unique.items(), results, strict=True):
            if photo_id is not None:
                entries[index].update(status="pending", id=photo_id)
                if self.queue.metrics is not None:
                    self.queue.metrics.ingested(item.size)
                photo_id_of[item.sha256] = photo_id
            else:
                entries[index].update(status="duplicate", duplicate_of=duplicate_of)
                photo_id_of[item.sha256] = duplicate_of
        for index, item in received.items():
            if index not in unique:
                entries[index].update(status="duplicate", duplicate_of=photo_id_of[item.sha256])

    @staticmethod
    def _new_photo(filename: str, item: Received) -> NewPhoto:
        p = item.probe
        return NewPhoto(
            filename=filename, sha256=item.sha256, size_bytes=item.size, width=p.width, height=p.height,
            format=p.format, content_type=p.content_type, taken_at=p.taken_at, exif=p.exif,
        )

    @staticmethod
    def _response(entries: list[dict]) -> tuple[int, dict]:
        accepted = sum(1 for e in entries if e["status"] == "pending")
        rejected_statuses = [e.pop("_status") for e in entries if e["status"] == "rejected"]
        body = {"accepted": accepted, "rejected": len(rejected_statuses), "photos": entries}
        if accepted:
            return 202, body
        if len(rejected_statuses) == len(entries):
            statuses = set(rejected_statuses)
            return (statuses.pop() if len(statuses) == 1 else 400), body
        return 200, body  # nothing new, but nothing refused: every file was already in the album
