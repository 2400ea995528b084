"""Receiving uploads: stream each file to a temp file while hashing it, enforce the limits as the bytes arrive,
sniff and probe the header (no decode), store the original content-addressed, and create photo + jobs.

Ingest speaks no HTTP: the web layer reads the request (multipart parts, or a finished tus upload) and hands each
file over as a filename and a source of chunks; ingest answers with one typed outcome per file, and the web layer
chooses the statuses and bodies. Request-level failures (a full disk, a broken body) are raised and store nothing
at all; file-level failures (too large, not an image, corrupt) reject that file only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import aiofiles

from . import imaging
from .config import Settings
from .errors import (
    BadRequest,
    Conflict,
    InsufficientStorage,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PhotoqError,
    UnsupportedMedia,
)
from .models import NewPhoto, clean_text
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


# -- what the web layer hands in, and what it gets back ---------------------------------------------------------


@dataclass(frozen=True)
class IncomingFile:
    filename: str | None  # as the client sent it; only ever shown, after display_filename()
    chunks: AsyncIterator[bytes]  # the file's bytes; ingest stops reading early when it refuses the file


@dataclass(frozen=True)
class Accepted:
    filename: str
    photo_id: int


@dataclass(frozen=True)
class Duplicate:
    filename: str
    duplicate_of: int  # the photo of the album that has these bytes already


@dataclass(frozen=True)
class Rejected:
    filename: str
    error: PhotoqError  # the code and message for the client; its class is the kind of refusal (errors.py)


FileOutcome = Accepted | Duplicate | Rejected


@dataclass
class Received:
    temp: Path
    sha256: str
    size: int
    probe: imaging.Probe


def display_filename(raw: str | None) -> str:
    """A client's filename made safe to show: last path component, cleaned as every name is (models.clean_text),
    bounded.

    Browsers percent-escape quotes and line breaks in multipart filenames and some clients escape everything,
    so escapes are decoded first (before looking for path separators).
    """
    raw = raw or ""
    if "%" in raw:
        try:
            raw = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            pass
    name = clean_text(raw.replace("\\", "/").rsplit("/", 1)[-1])
    if name in ("", ".", ".."):
        name = "upload"
    return name[:MAX_FILENAME_CHARS]


def request_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request is larger than the {limit} bytes this server accepts at once.",
                           code="request_too_large")


def disk_full() -> InsufficientStorage:
    return InsufficientStorage("The server's disk filled up during the upload; nothing was stored.")


def empty_file() -> BadRequest:
    return BadRequest("The file is empty.", code="empty_file")


def image_refusal(exc: imaging.ImageError) -> PhotoqError:
    """What kind of refusal an image the decoder would not take is (its code and message stay the decoder's)."""
    if isinstance(exc, imaging.TooManyPixels):
        return PayloadTooLarge(str(exc), code=exc.code)
    if isinstance(exc, imaging.UnsupportedImage):
        return UnsupportedMedia(str(exc), code=exc.code)
    return BadRequest(str(exc), code=exc.code)


async def probe_file(path: Path, max_pixels: int) -> imaging.Probe | PhotoqError:
    """The header of a fully received file, probed in a thread (no decode)."""
    try:
        return await asyncio.to_thread(imaging.probe, str(path), max_pixels)
    except imaging.ImageError as exc:
        return image_refusal(exc)


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

    async def receive(self, album_id: int, files: AsyncIterable[IncomingFile | Rejected],
                      batch: str | None = None) -> list[FileOutcome]:
        """Receive every file (a part the web layer refused already comes as Rejected), then store and queue the
        accepted ones together. One outcome per file, in order."""
        refused: list[Rejected | None] = []  # by position; None for a file received, whose outcome comes on storing
        received: dict[int, tuple[str, Received]] = {}  # position -> the file
        try:
            async for item in files:
                if isinstance(item, Rejected):
                    refused.append(item)
                    continue
                filename = display_filename(item.filename)
                got = await self._receive_one(item.chunks)
                if isinstance(got, PhotoqError):
                    refused.append(Rejected(filename, got))
                else:
                    received[len(refused)] = (filename, got)
                    refused.append(None)
            stored = await self._store_and_queue(album_id, received, batch) if received else {}
        finally:
            await self.storage.remove_uploads(r.temp for _, r in received.values())
        return [stored[index] if outcome is None else outcome for index, outcome in enumerate(refused)]

    async def receive_file(self, album_id: int, path: Path, filename: str, sha256: str, size: int,
                           batch: str | None = None) -> FileOutcome:
        """A whole file that arrived another way (a finished resumable upload, `photoq import`) takes an uploaded
        file's road from here: probe, dedup, store the original, photo + jobs. The file may have been moved into
        the store; what is left there is the caller's."""
        shown = display_filename(filename)
        probe = await probe_file(path, self.limits.max_pixels) if size else empty_file()
        if isinstance(probe, PhotoqError):
            return Rejected(shown, probe)
        stored = await self._store_and_queue(album_id, {0: (shown, Received(path, sha256, size, probe))}, batch)
        return stored[0]

    async def receive_unstored(self, chunks: AsyncIterator[bytes]) -> Received | PhotoqError:
        """One file checked as an uploaded one is (size, type by content, pixels) into a temp file that is then the
        caller's: the share inbox (shares.py) keeps it until its album is chosen."""
        return await self._receive_one(chunks)

    async def _receive_one(self, chunks: AsyncIterator[bytes]) -> Received | PhotoqError:
        """One file into a temp file: hashed, its size and first bytes checked as they arrive, then probed. On a
        refusal nothing of it is kept, and the rest of its chunks are left unread."""
        temp = self.storage.new_upload_path()
        keep = False
        try:
            streamed = await self._stream_to_file(chunks, temp)
            if isinstance(streamed, PhotoqError):
                return streamed
            sha256, size = streamed
            probe = await probe_file(temp, self.limits.max_pixels)
            if isinstance(probe, PhotoqError):
                return probe
            keep = True
            return Received(temp, sha256, size, probe)
        finally:
            if not keep:
                await self.storage.remove_uploads([temp])

    async def _stream_to_file(self, chunks: AsyncIterator[bytes], temp: Path) -> tuple[str, int] | PhotoqError:
        hasher = hashlib.sha256()
        size = 0
        head = b""
        next_disk_check = DISK_CHECK_EVERY_BYTES
        try:
            async with aiofiles.open(temp, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.limits.max_file_bytes:
                        return PayloadTooLarge(f"The file is larger than the {self.limits.max_file_bytes} bytes "
                                               "allowed.")
                    if len(head) < imaging.SNIFF_BYTES:
                        head += chunk[: imaging.SNIFF_BYTES - len(head)]
                        if len(head) >= imaging.SNIFF_BYTES and imaging.sniff(head) is None:
                            return UnsupportedMedia(NOT_AN_IMAGE)
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
            return empty_file()
        return hasher.hexdigest(), size

    async def _store_and_queue(self, album_id: int, received: dict[int, tuple[str, Received]],
                               batch: str | None = None) -> dict[int, Accepted | Duplicate]:
        """Store the originals and add the photos and their jobs in one go; the outcome of each, by the same key.
        Several copies of one file in a request are one photo (the first) and duplicates of it."""
        first_index_of: dict[str, int] = {}
        for index, (_, item) in received.items():
            first_index_of.setdefault(item.sha256, index)
        unique = {index: received[index] for index in first_index_of.values()}
        relpaths = {i: self.storage.original_relpath(r.sha256, r.probe.format) for i, (_, r) in unique.items()}

        staged_ids = await self.db.stage_files([(relpaths[i], r.sha256) for i, (_, r) in unique.items()],
                                                self.queue.clock())
        try:
            for index, (_, item) in unique.items():
                try:
                    await self.storage.store_original(item.temp, relpaths[index])
                except OSError as exc:
                    if out_of_disk(exc):
                        raise disk_full() from None
                    raise
            photos = [self._new_photo(filename, item) for filename, item in unique.values()]
            try:
                results = await self.queue.add_photos(album_id, photos, staged_ids, batch)
            except LookupError:
                raise NotFound("The album was deleted during the upload.") from None
        except BaseException:
            await self.db.unstage(staged_ids, self.storage.remove_relpaths)
            raise

        outcomes: dict[int, Accepted | Duplicate] = {}
        photo_id_of: dict[str, int] = {}
        for (index, (filename, item)), (photo_id, duplicate_of) in zip(unique.items(), results, strict=True):
            if photo_id is not None:
                outcomes[index] = Accepted(filename, photo_id)
                if self.queue.metrics is not None:
                    self.queue.metrics.ingested(item.size)
                photo_id_of[item.sha256] = photo_id
            else:
                outcomes[index] = Duplicate(filename, duplicate_of)
                photo_id_of[item.sha256] = duplicate_of
        for index, (filename, item) in received.items():
            if index not in unique:
                outcomes[index] = Duplicate(filename, photo_id_of[item.sha256])
        return outcomes

    @staticmethod
    def _new_photo(filename: str, item: Received) -> NewPhoto:
        p = item.probe
        return NewPhoto(
            filename=filename, sha256=item.sha256, size_bytes=item.size, width=p.width, height=p.height,
            format=p.format, content_type=p.content_type, taken_at=p.taken_at, exif=p.exif,
        )
