"""Where files live under the data directory, and the few operations on them.

    data/
      photoq.db                      the database (plus -wal, -shm)
      token                          the generated admin token (0600)
      originals/ab/cd/<sha256>.jpg   content-addressed originals
      variants/<nn>/<photo id>/      a photo's outputs (thumb-150.webp, ...)
      tmp/                           uploads being received (upload-<owner>-<random>.part); emptied at start-up
      serve.lock                     held by the running server (embedded database only); see datadir_lock.py
      resumable/<id>/                resumable (tus) uploads: their bytes and state; see resumable.py

Nothing on disk is ever named by a client. Every write lands under a temporary name first and is renamed into place.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import socket
import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path

from . import durable, imaging
from .durable import fsync_directory

PARTIAL_OUTPUT_SUFFIX = ".tmp"


def out_of_disk(exc: BaseException) -> bool:
    """The disk (or the user's quota) is full: a file, or the database, could not grow."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL


class Storage:
    def __init__(self, data_dir: Path, fsync: bool = True):
        self.root = Path(data_dir)
        self.fsync = fsync
        self.originals = self.root / "originals"
        self.variants = self.root / "variants"
        self.tmp = self.root / "tmp"

    def prepare(self) -> None:
        """Start-up: the folders, durably (a power cut must not take a folder, and the files in it, away)."""
        for directory in (self.root, self.originals, self.variants, self.tmp):
            durable.makedirs(directory, self.fsync)
        # The 256 variant buckets are made here, once, rather than by the image processes as photos arrive: two
        # processes could then race, one putting a photo's outputs in a bucket whose name the other has not yet
        # made durable.
        missing = [b for b in (self.variants / f"{i:02x}" for i in range(256)) if not b.is_dir()]
        for bucket in missing:
            bucket.mkdir(exist_ok=True)
        if missing and self.fsync:
            fsync_directory(self.variants)

    @property
    def database_path(self) -> Path:
        return self.root / "photoq.db"

    @property
    def token_path(self) -> Path:
        return self.root / "token"

    # -- names -------------------------------------------------------------------------------------------------

    def original_relpath(self, sha256: str, fmt: str) -> str:
        return f"originals/{sha256[:2]}/{sha256[2:4]}/{sha256}{imaging.EXTENSIONS[fmt]}"

    def original_path(self, sha256: str, fmt: str) -> Path:
        return self.root / self.original_relpath(sha256, fmt)

    def variant_dir(self, photo_id: int) -> Path:
        return self.variants / f"{photo_id % 256:02x}" / str(photo_id)

    def variant_path(self, photo_id: int, output_name: str, fmt: str) -> Path:
        return self.variant_dir(photo_id) / imaging.output_filename(imaging.OutputSpec(output_name, 1, 1, fmt))

    def highest_ids_on_disk(self) -> dict[str, int]:
        """The highest photo id with a variant folder and the highest album id a resumable upload is bound for: ids
        handed out once, which a database that starts counting for good (schema version 4) must count past."""
        highest = {"photos": 0, "albums": 0}
        if self.variants.is_dir():
            for bucket in os.scandir(self.variants):
                if bucket.is_dir(follow_symlinks=False):
                    ids = [int(e.name) for e in os.scandir(bucket.path) if e.name.isdigit()]
                    highest["photos"] = max([highest["photos"], *ids])
        resumable = self.root / "resumable"
        if resumable.is_dir():
            for upload in os.scandir(resumable):
                try:
                    album_id = json.loads((Path(upload.path) / "info.json").read_bytes())["album_id"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if isinstance(album_id, int):
                    highest["albums"] = max(highest["albums"], album_id)
        return highest

    def new_upload_path(self) -> Path:
        return self.tmp / f"upload-{owner_tag()}-{uuid.uuid4().hex}.part"

    def free_bytes(self) -> int:
        return shutil.disk_usage(self.root).free

    # -- blocking operations, each run in a thread by its async wrapper -----------------------------------------

    async def store_original(self, upload: Path, relpath: str) -> None:
        """Move a fully received upload into the content-addressed store, durably."""
        await asyncio.to_thread(self._store_original, upload, self.root / relpath)

    def _store_original(self, upload: Path, final: Path) -> None:
        if self.fsync:
            fd = os.open(upload, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        durable.makedirs(final.parent, self.fsync)
        os.replace(upload, final)
        if self.fsync:
            fsync_directory(final.parent)

    async def remove_uploads(self, paths: Iterable[Path]) -> None:
        await asyncio.to_thread(_unlink_all, list(paths))

    async def remove_relpaths(self, relpaths: Iterable[str]) -> None:
        """Remove these files durably: once this returns, a power cut cannot bring them back (the caller forgets
        them in the database next, and a file that came back would be an orphan)."""
        await asyncio.to_thread(_unlink_all, [self.root / p for p in relpaths], self.fsync)

    async def remove_photo_files(self, photo_ids: Iterable[int], originals: Iterable[tuple[str, str]]) -> None:
        photo_ids, originals = list(photo_ids), list(originals)

        def remove() -> None:
            for photo_id in photo_ids:
                shutil.rmtree(self.variant_dir(photo_id), ignore_errors=True)
            _unlink_all([self.original_path(sha256, fmt) for sha256, fmt in originals])

        await asyncio.to_thread(remove)

    async def remove_partial_outputs(self, photo_id: int, output_names: Iterable[str]) -> None:
        """Delete temp files a killed render of these outputs left in a photo's folder (before the job runs again).

        Only these outputs' own temp files (".<name>.<random>.tmp"; output names hold no dots): the photo's other job
        may be writing its outputs into the same folder at this moment.
        """
        prefixes = tuple(f".{name}." for name in output_names)

        def remove() -> None:
            directory = self.variant_dir(photo_id)
            try:
                names = os.listdir(directory)
            except FileNotFoundError:
                return
            _unlink_all([directory / n for n in names if n.startswith(prefixes) and n.endswith(PARTIAL_OUTPUT_SUFFIX)])

        await asyncio.to_thread(remove)

    async def remove_outputs(self, photo_id: int, outputs: Iterable[tuple[str, str]]) -> None:
        """Delete these (output name, format) files of a photo."""
        doomed = [self.variant_path(photo_id, name, fmt) for name, fmt in outputs]
        if doomed:
            await asyncio.to_thread(_unlink_all, doomed)

    async def remove_other_formats(self, photo_id: int, outputs: Iterable[tuple[str, str]]) -> None:
        """For each (output name, format just written): delete that output's files in any other output format."""
        stale = [self.variant_path(photo_id, name, other) for name, fmt in outputs
                 for other in imaging.OUTPUT_FORMATS if other != fmt]
        await asyncio.to_thread(_unlink_all, stale)

    def find_output(self, photo_id: int, name: str, recorded_format: str | None,
                    configured_format: str) -> tuple[Path, str] | None:
        """(path, format) of an output's file: in the format it was recorded with; for a row from before schema
        version 3 (no recorded format) in the configured format, else any output format (the configuration may
        have changed since). None when there is no file."""
        if recorded_format is not None:
            candidates = [recorded_format]
        else:
            candidates = [configured_format, *(f for f in imaging.OUTPUT_FORMATS if f != configured_format)]
        for fmt in candidates:
            path = self.variant_path(photo_id, name, fmt)
            if path.is_file():
                return path, fmt
        return None

    def sweep_temp(self, everything: bool = True) -> int:
        """Start-up: remove the uploads a previous run was still receiving. Returns how many.

        `everything` when this process owns the directory (the embedded database, under the serve lock): whatever is
        in tmp/ was left by a dead run. Otherwise (several nodes on one shared directory) only this machine's files
        whose process is gone: another node's uploads in flight are not ours to delete."""
        removed = 0
        for entry in os.scandir(self.tmp):
            if not everything and not _left_by_dead_process_here(entry.name):
                continue
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed += 1
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
                removed += 1
        return removed


def owner_tag() -> str:
    """Who writes a temp file: this machine and process, so a node on a shared directory can tell its own apart."""
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c == ".")[:64] or "host"
    return f"{host}.{os.getpid()}"


def _left_by_dead_process_here(name: str) -> bool:
    """A temp file named by owner_tag() of this machine whose process no longer runs (or is this one, which has
    nothing in flight at start-up)."""
    parts = name.split("-")
    if len(parts) < 3 or parts[0] != "upload":
        return False
    host, _, pid = parts[1].rpartition(".")
    if host != owner_tag().rpartition(".")[0] or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _unlink_all(paths: list[Path], fsync: bool = False) -> None:
    """Unlink each path that exists; with `fsync`, then fsync the folders they were in, so the removals are durable."""
    folders = set()
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        folders.add(path.parent)
    if fsync:
        for folder in folders:
            fsync_directory(folder)
