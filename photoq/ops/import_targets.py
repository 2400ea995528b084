"""Where `photoq import` sends files: a running photoq server (its HTTP API) or the data directory itself.

Both answer a batch of files with one Outcome per file, in order, and stop the import with StopImport when going
on cannot help (a full disk, a deleted album, a server that went away).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import aiohttp

from ..config import Settings
from ..db import Database
from ..errors import InsufficientStorage, NotFound
from ..events import Broadcaster
from ..ingest import Accepted, Duplicate, FileOutcome, Ingest, display_filename
from ..queue import JobQueue
from ..storage import Storage, out_of_disk
from .import_progress import Counts, Progress

CHUNK_BYTES = 1024 * 1024
CONNECTION_RETRIES = 5  # consecutive failed requests before the import stops
ALBUM_BUSY_WAIT_SECONDS = 10.0
DEFAULT_RETRY_AFTER_SECONDS = 5.0
BATCH_HEADER = "X-Photoq-Batch"


@dataclass(frozen=True)
class Candidate:
    """A file found in the folder, with the size and mtime it had when found."""

    relpath: str
    path: Path
    size: int
    mtime_ns: int

    @property
    def filename(self) -> str:
        # A name that is not valid UTF-8 is shown with replacement characters (it is only a display name).
        return display_filename(os.path.basename(self.relpath).encode("utf-8", "replace").decode("utf-8"))


@dataclass(frozen=True)
class Outcome:
    status: str  # imported | duplicate | rejected | unreadable
    sha256: str | None = None
    photo_id: int | None = None
    code: str | None = None
    message: str | None = None


class StopImport(Exception):
    """Going on cannot help; the message says why and what to do."""


class UsageError(Exception):
    """The command cannot start as asked (exit code 2)."""


def unreadable(exc: OSError) -> Outcome:
    return Outcome("unreadable", code="unreadable", message=exc.strerror or str(exc))


def outcome_of(entry: dict, sha256: str | None) -> Outcome:
    """An upload response's entry for one file, as an Outcome."""
    status = entry.get("status")
    if status == "pending":
        return Outcome("imported", sha256, entry.get("id"))
    if status == "duplicate":
        return Outcome("duplicate", sha256, entry.get("duplicate_of"))
    return Outcome("rejected", sha256, code=entry.get("error"), message=entry.get("message"))


def ingested(result: FileOutcome, sha256: str) -> Outcome:
    """This process's own Ingest's outcome for one file, as an Outcome."""
    if isinstance(result, Accepted):
        return Outcome("imported", sha256, result.photo_id)
    if isinstance(result, Duplicate):
        return Outcome("duplicate", sha256, result.duplicate_of)
    return Outcome("rejected", sha256, code=result.error.code, message=result.error.message)


# -- a running server -----------------------------------------------------------------------------------------------


class ServerTarget:
    """Uploads through POST /api/albums/{id}/photos, several files per request, each streamed from disk."""

    next_step = "the server's workers are processing the new photos now (`photoq status` shows the queue)"

    def __init__(self, url: str, token: str, counts: Counts, progress: Progress):
        self.url = url
        self.description = f"through the running server at {url}"
        self.counts = counts
        self.progress = progress
        self.batch_id: str | None = None  # keeps a block_while_processing album open for the whole import
        self._session = aiohttp.ClientSession(
            base_url=url, headers={"Authorization": f"Bearer {token}"},
            # No total limit: a batch of large files on a slow link takes what it takes.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=600),
        )

    async def close(self) -> None:
        await self._session.close()

    async def albums(self) -> list[tuple[int, str]]:
        body = await self._request_json("GET", "/api/albums", 200)
        return [(a["id"], a["name"]) for a in body["albums"]]

    async def create_album(self, name: str) -> int:
        return (await self._request_json("POST", "/api/albums", 201, {"name": name}))["id"]

    async def _request_json(self, method: str, path: str, expected: int, body: dict | None = None) -> dict:
        try:
            return await self._request_json_once(method, path, expected, body)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise StopImport(f"the server at {self.url} did not answer {method} {path} ({exc})") from None

    async def _request_json_once(self, method: str, path: str, expected: int, body: dict | None) -> dict:
        while True:
            async with self._session.request(method, path, json=body) as response:
                answer = await response.json(content_type=None)
                if response.status in (429, 503):
                    seconds = retry_after(response.headers)
                    await self._wait(seconds, f"the server is busy; waiting {seconds:.0f} s")
                    continue
                if response.status != expected:
                    message = answer.get("message", answer) if isinstance(answer, dict) else answer
                    raise StopImport(f"the server answered {response.status}: {message}")
                return answer

    async def send(self, album_id: int, batch: list[Candidate]) -> list[Outcome]:
        results: dict[str, Outcome] = {}
        todo = list(batch)
        failures = 0
        while todo:
            files: dict[str, BinaryIO] = {}
            for c in todo:
                try:
                    files[c.relpath] = await asyncio.to_thread(open, c.path, "rb")
                except OSError as exc:
                    results[c.relpath] = unreadable(exc)
            todo = [c for c in todo if c.relpath in files]
            if not todo:
                break
            hashes = {c.relpath: hashlib.sha256() for c in todo}
            read_errors: dict[str, OSError] = {}
            try:
                status, body, headers = await self._post(album_id, todo, files, hashes, read_errors)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                if read_errors:  # our own disk, not the server: drop those files and send the rest again
                    for relpath, error in read_errors.items():
                        results[relpath] = unreadable(error)
                    todo = [c for c in todo if c.relpath not in read_errors]
                    continue
                failures += 1
                if failures > CONNECTION_RETRIES:
                    raise StopImport(f"the server at {self.url} stopped answering ({exc or type(exc).__name__})") \
                        from None
                await self._wait(min(30.0, 2.0 ** failures), "the server did not answer; trying again")
                continue
            finally:
                for f in files.values():
                    f.close()
                self.counts.bytes_in_flight = 0
            if status in (500, 502, 504):  # a proxy in front of photoq, or a passing fault: like no answer
                failures += 1
                if failures > CONNECTION_RETRIES:
                    raise StopImport(f"the server at {self.url} keeps answering {status}")
                await self._wait(min(30.0, 2.0 ** failures), f"the server answered {status}; trying again")
                continue
            failures = 0
            entries = body.get("photos") if isinstance(body, dict) else None
            if isinstance(entries, list) and len(entries) == len(todo):
                for c, entry in zip(todo, entries, strict=True):
                    results[c.relpath] = outcome_of(entry, hashes[c.relpath].hexdigest())
                break
            code = body.get("error") if isinstance(body, dict) else None
            message = body.get("message", "") if isinstance(body, dict) else str(body)
            if status in (429, 503):
                seconds = retry_after(headers)
                why = "too many requests" if status == 429 else "the server's queue is full"
                await self._wait(seconds, f"{why}; waiting {seconds:.0f} s")
                continue
            if status == 409 and code == "album_busy":
                await self._wait(ALBUM_BUSY_WAIT_SECONDS, "the album is still processing earlier uploads; waiting")
                continue
            if status == 413 and code in ("too_many_files", "request_too_large") and len(todo) > 1:
                half = len(todo) // 2  # the server's limits are lower than ours: smaller requests
                for part in (todo[:half], todo[half:]):
                    results.update(zip((c.relpath for c in part), await self.send(album_id, part), strict=True))
                break
            if status == 413 and code == "request_too_large":
                results[todo[0].relpath] = Outcome("rejected", code=code, message=message)
                break
            if status == 507:
                raise StopImport(f"the server's disk is full: {message}")
            if status == 404:
                raise StopImport("the album was deleted on the server during the import")
            raise StopImport(f"the server answered {status} {code or ''}: {message}".rstrip())
        return [results[c.relpath] for c in batch]

    async def _post(self, album_id, todo, files, hashes, read_errors) -> tuple[int, object, object]:
        form = aiohttp.MultipartWriter("form-data")
        for c in todo:
            part = form.append_payload(aiohttp.payload.AsyncIterablePayload(
                self._chunks(c.relpath, files[c.relpath], hashes[c.relpath], read_errors),
                content_type="application/octet-stream"))
            part.set_content_disposition("form-data", name="file", filename=c.filename)
        headers = {BATCH_HEADER: self.batch_id} if self.batch_id else {}
        async with self._session.post(f"/api/albums/{album_id}/photos", data=form, headers=headers) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = await response.text()
            return response.status, body, response.headers

    async def _chunks(self, relpath, file, hasher, read_errors):
        def read() -> bytes:
            chunk = file.read(CHUNK_BYTES)
            hasher.update(chunk)
            return chunk

        while True:
            try:
                chunk = await asyncio.to_thread(read)
            except OSError as exc:
                read_errors[relpath] = exc
                raise
            if not chunk:
                return
            self.counts.bytes_in_flight += len(chunk)
            yield chunk

    async def _wait(self, seconds: float, note: str) -> None:
        self.progress.note = note
        self.progress.show()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.progress.note = ""


def retry_after(headers) -> float:
    try:
        return max(1.0, min(float(headers.get("Retry-After", "")), 3600.0))
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS


# -- the data directory ---------------------------------------------------------------------------------------------


class LocalCopyError(Exception):
    """Writing the copy in tmp/ failed."""

    def __init__(self, error: OSError):
        self.error = error


class SourceUnreadable(Exception):
    def __init__(self, error: OSError):
        self.error = error


class FileTooLarge(Exception):
    pass


class DirectTarget:
    """Copies each file into tmp/ while hashing it, then hands it to the server's own Ingest (receive_file), so
    probing, limits, originals, photo rows, jobs, dedup and crash safety (staged_files) are exactly an upload's.
    The jobs run when `photoq serve` starts (a server already running here finds them within half a minute)."""

    next_step = "the new photos are processed when `photoq serve` next starts on this data directory"

    def __init__(self, settings: Settings, storage: Storage, db: Database, counts: Counts):
        self.description = f"straight into {storage.root} (no photoq server answered)"
        self.settings = settings
        self.storage = storage
        self.counts = counts
        self.queue = JobQueue(db, Broadcaster(self._no_stats), settings.queue)
        self.ingest = Ingest(self.queue, storage, settings)
        self.db = db

    @staticmethod
    async def _no_stats(album_id) -> dict:
        return {}  # nobody subscribes to this process's events

    async def albums(self) -> list[tuple[int, str]]:
        return [(a.id, a.name) for a in await self.db.list_albums()]

    async def create_album(self, name: str) -> int:
        return (await self.queue.create_album(name)).id

    async def send(self, album_id: int, batch: list[Candidate]) -> list[Outcome]:
        if not await self.queue.has_room():
            raise StopImport(
                f"the queue holds its maximum of {self.settings.queue.max_pending} unfinished jobs "
                "([queue] max_pending); start `photoq serve` to work through them, then run this import again")
        outcomes = []
        try:
            for c in batch:
                outcomes.append(await self._import_one(album_id, c))
        finally:
            self.counts.bytes_in_flight = 0
        return outcomes

    async def _import_one(self, album_id: int, c: Candidate) -> Outcome:
        limits = self.settings.upload
        too_large = Outcome("rejected", code="too_large",
                            message=f"The file is larger than the {limits.max_file_bytes} bytes allowed.")
        if c.size > limits.max_file_bytes:
            return too_large
        try:
            self.ingest.check_disk(c.size)
        except InsufficientStorage:
            raise StopImport(f"the disk of {self.storage.root} is nearly full "
                             "(less than [storage] min_free_bytes would be left)") from None
        temp = self.storage.new_upload_path()
        try:
            try:
                sha256, size = await asyncio.to_thread(self._copy, c.path, temp, limits.max_file_bytes)
            except FileTooLarge:
                return too_large
            except SourceUnreadable as exc:
                return unreadable(exc.error)
            except LocalCopyError as exc:
                if out_of_disk(exc.error):
                    raise StopImport(f"the disk of {self.storage.root} is full") from None
                raise StopImport(f"cannot write in {self.storage.tmp}: {exc.error}") from None
            try:
                result = await self.ingest.receive_file(album_id, temp, c.filename, sha256, size)
            except InsufficientStorage:
                raise StopImport(f"the disk of {self.storage.root} is full") from None
            except NotFound:
                raise StopImport("the album was deleted during the import") from None
            except OSError as exc:  # e.g. a `photoq serve` starting on this data directory swept tmp/
                raise StopImport(f"the copy of {c.relpath} in {self.storage.tmp} failed ({exc}); "
                                 "was photoq serve started meanwhile?") from None
            return ingested(result, sha256)
        finally:
            await self.storage.remove_uploads([temp])  # gone already when it was stored

    def _copy(self, source: Path, temp: Path, max_bytes: int) -> tuple[str, int]:
        """Runs in a thread: one pass that reads, hashes and writes; the copy is fsynced when it is stored."""
        hasher = hashlib.sha256()
        size = 0
        try:
            src = open(source, "rb")  # noqa: SIM115 (closed by the `with` below; only opening is SourceUnreadable)
        except OSError as exc:
            raise SourceUnreadable(exc) from None
        with src:
            try:
                with open(temp, "wb") as out:
                    while True:
                        try:
                            chunk = src.read(CHUNK_BYTES)
                        except OSError as exc:
                            raise SourceUnreadable(exc) from None
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > max_bytes:
                            raise FileTooLarge()
                        hasher.update(chunk)
                        out.write(chunk)
                        self.counts.bytes_in_flight += len(chunk)
            except OSError as exc:  # writing the copy, not reading the source
                raise LocalCopyError(exc) from None
        return hasher.hexdigest(), size
