"""Files shared to photoq from a phone ("Share -> photoq"), kept until the user picks an album and confirms.

The installed web app is a share target: the phone POSTs the files to /share. That request cannot carry our CSRF
token, so it only parks the files here (streamed to disk, checked as uploads are: size, type by content, pixels);
nothing enters an album until the user confirms on our own page, with a form that does carry it.

    data/shares/<token>/meta.json   the files' names, sizes, hashes and any rejection
    data/shares/<token>/<n>         the n-th file's bytes

A share not confirmed within SHARE_TTL_SECONDS is removed, and at most MAX_SHARES are kept (the oldest go first),
so a stream of shares can fill neither the disk nor the list.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path

from .errors import BadRequest, PayloadTooLarge
from .ingest import FileOutcome, IncomingFile, Ingest, Received, Rejected, display_filename

SHARE_TTL_SECONDS = 3600
MAX_SHARES = 20
META = "meta.json"


@dataclass(frozen=True)
class SharedFile:
    index: int
    filename: str
    size: int
    sha256: str | None
    content_type: str | None
    error: str | None  # why it cannot be added, for people; None when it can

    def as_dict(self) -> dict:
        return {"index": self.index, "filename": self.filename, "size": self.size, "sha256": self.sha256,
                "content_type": self.content_type, "error": self.error}


@dataclass(frozen=True)
class Share:
    token: str
    created_at: float
    files: tuple[SharedFile, ...]

    @property
    def addable(self) -> list[SharedFile]:
        return [f for f in self.files if f.error is None]


def valid_token(raw: str) -> bool:
    return 16 <= len(raw) <= 64 and raw.isascii() and all(c.isalnum() or c in "-_" for c in raw)


class ShareInbox:
    def __init__(self, root: Path, ingest: Ingest, clock=time.time):
        self.root = Path(root)
        self.ingest = ingest
        self.clock = clock

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, token: str) -> Path:
        return self.root / token

    async def receive(self, parts: AsyncIterable[IncomingFile | Rejected], content_length: int | None) -> Share:
        """Park the parts named `file` of a share (the web layer reads them, with the upload limits); other fields
        (title, text, url) are ignored."""
        limits = self.ingest.limits
        if content_length is not None and content_length > limits.max_request_bytes:
            raise PayloadTooLarge(f"At most {limits.max_request_bytes} bytes can be shared at once.")
        self.ingest.check_disk(content_length or 0)
        await self.sweep()
        token = secrets.token_urlsafe(24)
        folder = self._dir(token)
        await asyncio.to_thread(folder.mkdir, parents=True)
        files: list[SharedFile] = []
        try:
            async for part in parts:
                if isinstance(part, Rejected):
                    if part.error.code != "unexpected_field":  # a share's title or text is not a file
                        files.append(SharedFile(len(files), part.filename, 0, None, None, part.error.message))
                    continue
                filename = display_filename(part.filename)
                outcome = await self.ingest.receive_unstored(part.chunks)
                if isinstance(outcome, Received):
                    await asyncio.to_thread(os.replace, outcome.temp, folder / str(len(files)))
                    files.append(SharedFile(len(files), filename, outcome.size, outcome.sha256,
                                            outcome.probe.content_type, None))
                else:
                    files.append(SharedFile(len(files), filename, 0, None, None, outcome.message))
            if not files:
                raise BadRequest("Nothing was shared: the request has no files.", code="no_files")
            share = Share(token, self.clock(), tuple(files))
            await asyncio.to_thread(self._write_meta, share)
            return share
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            raise

    def _write_meta(self, share: Share) -> None:
        temp = self._dir(share.token) / (META + ".tmp")
        temp.write_text(json.dumps({"created_at": share.created_at, "files": [f.as_dict() for f in share.files]}))
        os.replace(temp, self._dir(share.token) / META)

    def _read(self, token: str) -> Share | None:
        try:
            meta = json.loads((self._dir(token) / META).read_text())
        except (OSError, ValueError):
            return None
        if self.clock() - meta["created_at"] > SHARE_TTL_SECONDS:
            return None
        return Share(token, meta["created_at"], tuple(SharedFile(**f) for f in meta["files"]))

    async def get(self, token: str) -> Share | None:
        if not valid_token(token):
            return None
        return await asyncio.to_thread(self._read, token)

    async def pending(self) -> list[Share]:
        """Shares waiting for a decision, newest first."""
        def read_all() -> list[Share]:
            found = [s for entry in self.root.iterdir() if (s := self._read(entry.name)) is not None]
            return sorted(found, key=lambda s: s.created_at, reverse=True)
        return await asyncio.to_thread(read_all)

    def file_path(self, share: Share, index: int) -> Path:
        return self._dir(share.token) / str(index)

    async def add_to_album(self, share: Share, album_id: int) -> list[FileOutcome]:
        """Every addable file of the share into the album, as uploads are; then the share is gone. One outcome per
        addable file."""
        outcomes = []
        try:
            for shared in share.addable:
                outcomes.append(await self.ingest.receive_file(album_id, self.file_path(share, shared.index),
                                                               shared.filename, shared.sha256 or "", shared.size))
        finally:
            await self.discard(share.token)
        return outcomes

    async def discard(self, token: str) -> None:
        if valid_token(token):
            await asyncio.to_thread(shutil.rmtree, self._dir(token), True)

    async def sweep(self) -> int:
        """Remove expired shares, unreadable leftovers, and the oldest beyond MAX_SHARES - 1 (room for one more)."""
        def sweep() -> int:
            if not self.root.is_dir():
                return 0
            now = self.clock()
            kept: list[tuple[float, Path]] = []
            removed = 0
            for entry in self.root.iterdir():
                try:
                    created = json.loads((entry / META).read_text())["created_at"]
                except (OSError, ValueError, KeyError, TypeError):
                    created = None
                # A share still being received has no meta yet: give it the TTL from its folder's time.
                if created is None:
                    try:
                        created = entry.stat().st_mtime
                    except OSError:
                        continue
                if now - created > SHARE_TTL_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
                else:
                    kept.append((created, entry))
            kept.sort()
            while len(kept) >= MAX_SHARES:
                shutil.rmtree(kept.pop(0)[1], ignore_errors=True)
                removed += 1
            return removed
        return await asyncio.to_thread(sweep)
