"""Resumable uploads: the state behind the tus 1.0 protocol (photoq/web/tus.py speaks the HTTP).

Each upload is a folder under data/resumable/, so it survives a restart and resumes from its offset:

    resumable/<id>/info.json   album, filename, length, offset (bytes durably received), expiry, and at the end
                               the outcome (the entry a multipart upload response lists for a file)
    resumable/<id>/data        the bytes received so far; moved into the store when the upload is complete

info.json is replaced atomically (temp + rename) and only after the bytes it counts are on disk, so its offset
never claims a byte a crash could lose; whatever lies beyond the offset in `data` is cut off before the next append.
Ids are random, never named by a client, and checked against a strict pattern before they become a path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiofiles

from . import durable, imaging
from .durable import fsync_directory
from .errors import ChecksumMismatch, PayloadTooLarge, PhotoqError
from .ingest import FileOutcome, Ingest, Rejected

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{32}")
RECORD = "info.json"
DATA = "data"
# During a long PATCH the bytes so far are fsynced and counted this often, so a killed server or a dropped
# connection loses at most this much of a browser's single-request upload.
CHECKPOINT_BYTES = 8 * 1024 * 1024
HASH_READ_BYTES = 1024 * 1024
WRITE_BYTES = 1024 * 1024  # network reads are gathered into writes of about this size, as for multipart uploads
CHECKSUM_ALGORITHMS: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256,
                                                     "md5": hashlib.md5}
MAX_SWEEP_INTERVAL_SECONDS = 900.0


class TakenOver(Exception):
    """Raised into a PATCH's body reads when a newer request for the same upload arrives: its client has most likely
    lost that connection and is resuming, while the old one may never see the connection end."""


@dataclass
class ResumableUpload:
    id: str
    album_id: int
    filename: str
    length: int
    offset: int
    created_at: float
    expires_at: float
    batch: str | None = None
    result: dict | None = None  # once finished: the upload response's entry (status pending, duplicate or rejected)
    result_status: int | None = None  # the HTTP status that answered the last byte

    @property
    def complete(self) -> bool:
        return self.offset == self.length


@dataclass
class Session:
    """What the server remembers of an upload while it runs: one writer at a time, and the running SHA-256 so that
    finishing needs no second read of the file (after a restart the file is hashed once at the end instead)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    reader: Any = None  # the body stream of the PATCH that holds the lock, while it reads
    sha256: Any = None
    hashed: int = 0  # bytes the running hash covers


class ResumableUploads:
    def __init__(self, root: Path, fsync: bool, expire_seconds: float, clock: Callable[[], float] = time.time):
        self.root = Path(root)
        self.fsync = fsync
        self.expire_seconds = expire_seconds
        self.clock = clock
        self._sessions: dict[str, Session] = {}

    # -- names and records ---------------------------------------------------------------------------------------

    @staticmethod
    def valid_id(raw: str) -> bool:
        return ID_PATTERN.fullmatch(raw) is not None

    def folder(self, upload_id: str) -> Path:
        return self.root / upload_id

    def data_path(self, upload_id: str) -> Path:
        return self.root / upload_id / DATA

    def session(self, upload_id: str) -> Session:
        return self._sessions.setdefault(upload_id, Session())

    def prepare(self) -> int:
        """Start-up: create the folder and remove what a creation cut off by a crash left. Returns how many."""
        durable.makedirs(self.root, self.fsync)
        removed = 0
        for entry in os.scandir(self.root):
            if not (self.valid_id(entry.name) and entry.is_dir(follow_symlinks=False)):
                _remove_entry(Path(entry.path))
                removed += 1
        return removed

    async def create(self, album_id: int, filename: str, length: int, batch: str | None) -> ResumableUpload:
        now = self.clock()
        upload = ResumableUpload(secrets.token_urlsafe(24), album_id, filename, length, 0, now,
                                 now + self.expire_seconds, batch)
        await asyncio.to_thread(self._create, upload)
        return upload

    def _create(self, upload: ResumableUpload) -> None:
        # Built under a temporary name and renamed, so an upload folder always has its record.
        building = self.root / f".new-{upload.id}"
        building.mkdir()
        try:
            (building / DATA).touch(exist_ok=False)
            self._write_record(upload, building)
            os.rename(building, self.folder(upload.id))
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        if self.fsync:
            fsync_directory(self.root)

    async def get(self, upload_id: str) -> ResumableUpload | None:
        if not self.valid_id(upload_id):
            return None
        return await asyncio.to_thread(self._read_record, upload_id)

    def _read_record(self, upload_id: str) -> ResumableUpload | None:
        try:
            raw = json.loads((self.folder(upload_id) / RECORD).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ResumableUpload(**raw)

    async def save(self, upload: ResumableUpload) -> None:
        await asyncio.to_thread(self._write_record, upload, self.folder(upload.id))

    def _write_record(self, upload: ResumableUpload, folder: Path) -> None:
        temp = folder / f".{RECORD}.{secrets.token_hex(4)}.tmp"
        try:
            with open(temp, "wb") as out:
                out.write(json.dumps(dataclasses.asdict(upload)).encode())
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(temp, folder / RECORD)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        if self.fsync:
            fsync_directory(folder)

    def expired(self, upload: ResumableUpload) -> bool:
        return self.clock() >= upload.expires_at

    def expires_from_now(self) -> float:
        return self.clock() + self.expire_seconds

    async def has_bytes(self, upload: ResumableUpload) -> bool:
        return await asyncio.to_thread(self.data_path(upload.id).is_file)

    # -- receiving ----------------------------------------------------------------------------------------------

    async def append(self, upload: ResumableUpload, chunks: AsyncIterator[bytes], checksum: tuple[str, bytes] | None,
                     check_disk: Callable[[int], None]) -> None:
        """Write a PATCH body at the upload's offset; the caller holds the session lock and checked the offset.

        Every byte that arrived is kept, even when the body is cut off, except with a checksum: then all or none.
        `upload.offset` ends at what is durably on disk, also when this raises."""
        session = self.session(upload.id)
        start = upload.offset
        if start == 0:
            session.sha256, session.hashed = hashlib.sha256(), 0
        running = session.sha256 if session.sha256 is not None and session.hashed == start else None
        rollback_hash = running.copy() if running is not None and checksum else None
        digest = CHECKSUM_ALGORITHMS[checksum[0]]() if checksum else None
        expected_digest = checksum[1] if checksum else None
        written = durable = start
        pending = bytearray()

        async def write_pending() -> None:
            nonlocal written
            await out.write(pending)
            written += len(pending)
            if running is not None:
                running.update(pending)
            if digest is not None:
                digest.update(pending)
            pending.clear()

        out = await aiofiles.open(self.data_path(upload.id), "r+b")
        try:
            await out.truncate(start)  # what a crash or a failed write left beyond the offset
            await out.seek(start)
            async for data in chunks:
                if written + len(pending) + len(data) > upload.length:
                    raise PayloadTooLarge(f"The body goes beyond this upload's Upload-Length of {upload.length}.")
                pending += data
                if len(pending) < WRITE_BYTES:
                    continue
                await write_pending()
                if digest is None and written - durable >= CHECKPOINT_BYTES:
                    await self._checkpoint(out, upload, written)
                    durable = written
                    check_disk(0)
            await write_pending()
            if digest is not None and digest.digest() != expected_digest:
                raise ChecksumMismatch()
            await self._checkpoint(out, upload, written)
            durable = written
        except BaseException:  # cancelled too: a server cancels the handler when its client goes away
            if digest is None and pending:
                try:
                    await write_pending()
                except OSError:
                    pass
            keep = start if digest is not None else written
            if keep > durable:
                try:
                    await self._checkpoint(out, upload, keep)
                    durable = keep
                except OSError:  # e.g. the disk filled up: the last checkpoint stands
                    pass
            try:
                await out.truncate(durable)
            except OSError:
                pass
            if running is not None:
                if digest is not None:
                    session.sha256, session.hashed = rollback_hash, start
                elif durable != written:
                    session.sha256 = None
                else:
                    session.hashed = written
            raise
        finally:
            await out.close()
        if running is not None:
            session.hashed = written

    async def _checkpoint(self, out, upload: ResumableUpload, offset: int) -> None:
        await out.flush()
        if self.fsync:
            await asyncio.to_thread(os.fsync, out.fileno())
        moved = dataclasses.replace(upload, offset=offset, expires_at=self.expires_from_now())
        await self.save(moved)
        upload.offset, upload.expires_at = moved.offset, moved.expires_at

    async def head_is_image(self, upload: ResumableUpload) -> bool:
        """False once the first bytes are known not to start an image (sniffed as a multipart part is)."""
        head = await asyncio.to_thread(_read_head, self.data_path(upload.id), imaging.SNIFF_BYTES)
        return len(head) < min(imaging.SNIFF_BYTES, upload.length) or imaging.sniff(head) is not None

    # -- finishing ---------------------------------------------------------------------------------------------

    async def finish(self, upload: ResumableUpload, ingest: Ingest) -> FileOutcome:
        """Hand a complete upload to ingest, exactly as a multipart part (the caller holds the session lock, and
        records the outcome with record_result, which removes the bytes of a file refused or already there)."""
        session = self._sessions.get(upload.id)
        if session is not None and session.sha256 is not None and session.hashed == upload.length:
            sha256 = session.sha256.hexdigest()
        else:
            sha256 = await asyncio.to_thread(_hash_file, self.data_path(upload.id))
        try:
            return await ingest.receive_file(upload.album_id, self.data_path(upload.id), upload.filename, sha256,
                                             upload.length)
        except PhotoqError as exc:
            if exc.status >= 500:  # a full disk, say: the bytes stay and finishing is tried again
                raise
            return Rejected(upload.filename, exc)  # e.g. the album was deleted meanwhile

    async def record_result(self, upload: ResumableUpload, status: int, entry: dict) -> None:
        """The answer to the upload's last byte (chosen by the web layer), kept until the upload expires."""
        upload.result, upload.result_status = entry, status
        upload.expires_at = self.expires_from_now()
        await self.save(upload)
        await asyncio.to_thread(self.data_path(upload.id).unlink, missing_ok=True)
        self._sessions.pop(upload.id, None)

    # -- removing ----------------------------------------------------------------------------------------------

    async def remove(self, upload_id: str) -> None:
        self._sessions.pop(upload_id, None)
        await asyncio.to_thread(shutil.rmtree, self.folder(upload_id), True)

    async def sweep_expired(self) -> int:
        """Remove every expired upload with its bytes. Uploads being written or finished right now are skipped."""
        names = await asyncio.to_thread(os.listdir, self.root)
        removed = 0
        for name in names:
            session = self._sessions.get(name)
            if session is not None and session.lock.locked():
                continue
            upload = await self.get(name)
            if upload is not None and self.expired(upload):
                await self.remove(upload.id)
                removed += 1
        return removed

    def sweep_interval(self) -> float:
        return min(MAX_SWEEP_INTERVAL_SECONDS, self.expire_seconds / 4)

    async def sweep_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval())
            try:
                removed = await self.sweep_expired()
            except OSError as exc:
                log.warning("could not sweep expired resumable uploads: %s", exc)
                continue
            if removed:
                log.info("removed %d expired resumable upload(s)", removed)


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _read_head(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_READ_BYTES):
            hasher.update(block)
    return hasher.hexdigest()
