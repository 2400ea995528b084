"""`photoq import DIR --album NAME`: bring a folder of photos into an album.

The folder is walked first (sorted paths; hidden files and folders, symlinks and special files skipped), each file
not already recorded in the journal is sniffed by its first bytes (non-images skipped), then the images are sent in
batches to a running server or straight into the data directory (import_targets.py), and each batch that is in the
album is recorded in the journal (import_journal.py) so an interrupted import resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .. import imaging
from ..config import Settings
from ..db import Database
from ..storage import Storage
from .import_journal import Journal, journal_path
from .import_progress import Counts, Progress, human_bytes, human_seconds
from .import_targets import Candidate, DirectTarget, Outcome, ServerTarget, StopImport, UsageError

BATCH_FILES = 16
BATCH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ImportOptions:
    folder: Path
    album_name: str | None = None
    album_id: int | None = None
    recursive: bool = True
    recheck: bool = False  # ignore the journal: offer every file again (the album's dedup still skips duplicates)
    quiet: bool = False
    verbose: bool = False
    batch_files: int = BATCH_FILES


# -- finding the files ----------------------------------------------------------------------------------------------


def find_files(root: Path, recursive: bool, skip_dirs: Iterable[Path], counts: Counts, say) -> list[Candidate]:
    """Every regular file under `root`, sorted by path, outside `skip_dirs`. Nothing behind a symlink is visited."""
    skip = {os.path.realpath(d) for d in skip_dirs}
    found: list[Candidate] = []
    folders = [(root, "")]
    while folders:
        folder, prefix = folders.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError as exc:
            counts.unreadable += 1
            say(f"unreadable folder: {prefix or '.'}: {exc.strerror or exc}", problem=True)
            continue
        for entry in listed:
            relpath = prefix + entry.name
            if entry.name.startswith("."):
                counts.hidden += 1
                say(f"skipped (hidden): {relpath}")
                continue
            try:
                if entry.is_symlink():
                    counts.other += 1
                    say(f"skipped (symlink): {relpath}")
                elif entry.is_dir(follow_symlinks=False):
                    if os.path.realpath(entry.path) in skip:
                        counts.other += 1
                        say(f"skipped (photoq's data directory): {relpath}")
                    elif recursive:
                        folders.append((Path(entry.path), relpath + "/"))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found.append(Candidate(relpath, Path(entry.path), st.st_size, st.st_mtime_ns))
                else:
                    counts.other += 1
                    say(f"skipped (not a regular file): {relpath}")
            except OSError as exc:
                counts.unreadable += 1
                say(f"unreadable: {relpath}: {exc.strerror or exc}", problem=True)
    found.sort(key=lambda c: c.relpath.split("/"))
    return found


def plan(candidates: list[Candidate], journal: Journal | None, counts: Counts, say) -> list[Candidate]:
    """The files still to send: not recorded by an earlier run, and images by their first bytes."""
    todo = []
    for c in candidates:
        if journal is not None and journal.is_done(c.relpath, c.size, c.mtime_ns):
            counts.journal += 1
            continue
        try:
            with open(c.path, "rb") as f:
                head = f.read(imaging.SNIFF_BYTES)
        except OSError as exc:
            counts.unreadable += 1
            say(f"unreadable: {c.relpath}: {exc.strerror or exc}", problem=True)
            continue
        if imaging.sniff(head) is None:
            counts.not_image += 1
            say(f"skipped (not an image): {c.relpath}")
            continue
        todo.append(c)
    return todo


def batches(todo: list[Candidate], max_files: int, max_bytes: int):
    batch: list[Candidate] = []
    size = 0
    for c in todo:
        if batch and (len(batch) >= max_files or size + c.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(c)
        size += c.size
    if batch:
        yield batch


# -- the album --------------------------------------------------------------------------------------------------


def find_album(albums: list[tuple[int, str]], name: str | None, album_id: int | None) -> int | None:
    """The chosen album's id; None when no album has that name (it will be created)."""
    if album_id is not None:
        if any(i == album_id for i, _ in albums):
            return album_id
        raise UsageError(f"there is no album with id {album_id}")
    matches = [i for i, n in albums if n == name]
    if len(matches) > 1:
        ids = ", ".join(str(i) for i in matches)
        raise UsageError(f'{len(matches)} albums are named "{name}" (ids {ids}); choose one with --album-id')
    return matches[0] if matches else None


# -- the import -------------------------------------------------------------------------------------------------


async def run_import(settings: Settings, options: ImportOptions, server: tuple[str, str] | None,
                     out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Import through the server at `server` (url, admin token) when given, else straight into the data directory.
    Raises UsageError when the command cannot start as asked."""
    if not options.folder.is_dir():
        raise UsageError(f"{options.folder} is not a folder")
    counts = Counts()
    progress = Progress(counts, err, options.quiet)
    if server is not None:
        target = ServerTarget(server[0], server[1], counts, progress)
        try:
            return await Importer(options, target, counts, progress, settings, out).run()
        finally:
            await target.close()
    storage = Storage(settings.data_dir, fsync=settings.storage.fsync)
    if not storage.database_path.exists():
        progress.message(f"photoq import: creating a new data directory in {settings.data_dir}")
    storage.prepare()  # no start-up sweep here: a server may be running on this data directory
    db = Database(storage.database_path, id_floors=storage.highest_ids_on_disk)
    await db.open()
    try:
        return await Importer(options, DirectTarget(settings, storage, db, counts), counts, progress, settings,
                              out).run()
    finally:
        await db.close()


class Importer:
    def __init__(self, options: ImportOptions, target, counts: Counts, progress: Progress, settings: Settings,
                 out: TextIO):
        self.options = options
        self.target = target  # ServerTarget or DirectTarget
        self.counts = counts
        self.progress = progress
        self.data_dir = Path(settings.data_dir)
        self.limits = settings.upload
        self.out = out
        self.journal: Journal | None = None
        self.stopped: str | None = None
        self.album_label = ""
        self.began = time.monotonic()

    def say(self, text: str, problem: bool = False) -> None:
        if problem or self.options.verbose:
            self.progress.message(text, problem=problem)

    async def run(self) -> int:
        options = self.options
        album_id = find_album(await self.target.albums(), options.album_name, options.album_id)
        try:
            if album_id is not None:
                self.album_label = self._label(album_id, created=False)
                self._open_journal(album_id)
            candidates = await asyncio.to_thread(find_files, options.folder, options.recursive, [self.data_dir],
                                                 self.counts, self.say)
            todo = await asyncio.to_thread(plan, candidates, self.journal, self.counts, self.say)
            self.counts.total_files = len(todo)
            self.counts.total_bytes = sum(c.size for c in todo)
            if todo:
                album_id = await self._album(album_id)
                self.progress.message(f"photoq import: {len(todo)} file(s), {human_bytes(self.counts.total_bytes)}, "
                                      f"into album {self.album_label}, {self.target.description}")
                await self._send(album_id, todo)
        finally:
            if self.journal is not None:
                self.journal.close()
        self._summary()
        return 1 if self.counts.failed or self.stopped else 0

    def _open_journal(self, album_id: int) -> None:
        path = journal_path(self.data_dir, self.options.folder, album_id)
        if isinstance(self.target, ServerTarget):  # one batch for the whole import (block_while_processing)
            self.target.batch_id = f"import-{path.stem}"
        journal = Journal(path, self.options.folder, album_id)
        try:
            journal.open(forget=self.options.recheck)
        except OSError as exc:
            self.say(f"warning: no journal ({exc}); an interrupted import will offer every file again", problem=True)
            return
        self.journal = journal

    async def _album(self, album_id: int | None) -> int:
        if album_id is None:
            album_id = await self.target.create_album(self.options.album_name)
            self.album_label = self._label(album_id, created=True)
            self._open_journal(album_id)
        return album_id

    def _label(self, album_id: int, created: bool) -> str:
        name = f'"{self.options.album_name}" ' if self.options.album_name is not None else ""
        return f"{name}(id {album_id}{', created' if created else ''})"

    async def _send(self, album_id: int, todo: list[Candidate]) -> None:
        max_files = max(1, min(self.options.batch_files, self.limits.max_files_per_request))
        max_bytes = min(BATCH_BYTES, self.limits.max_request_bytes)
        self.progress.start()
        try:
            for batch in batches(todo, max_files, max_bytes):
                try:
                    outcomes = await self.target.send(album_id, batch)
                except StopImport as exc:
                    self.stopped = str(exc)
                    self.progress.message(f"error: {exc}", problem=True)
                    return
                self._count(batch, outcomes)
        finally:
            await self.progress.stop()

    def _count(self, batch: list[Candidate], outcomes: list[Outcome]) -> None:
        c = self.counts
        done = []
        for candidate, outcome in zip(batch, outcomes, strict=True):
            c.files_done += 1
            c.bytes_done += candidate.size
            if outcome.status in ("imported", "duplicate"):
                if outcome.status == "imported":
                    c.imported += 1
                else:
                    c.duplicate += 1
                    self.say(f"duplicate (already in the album): {candidate.relpath}")
                if outcome.sha256 is not None:  # known for every file that was read, so always here
                    done.append((candidate.relpath, candidate.size, candidate.mtime_ns, outcome.sha256))
            elif outcome.status == "rejected":
                c.rejected += 1
                self.say(f"rejected: {candidate.relpath}: {outcome.message} ({outcome.code})", problem=True)
            else:
                c.unreadable += 1
                self.say(f"unreadable: {candidate.relpath}: {outcome.message}", problem=True)
        if self.journal is not None:
            self.journal.record(done)

    def _summary(self) -> None:
        if self.options.quiet:
            return
        c = self.counts
        elapsed = time.monotonic() - self.began
        label = self.album_label or "(none created: nothing to import)"
        lines = [f"photoq import: {self.options.folder} -> album {label}, {human_seconds(elapsed)}"]
        rows = [
            ("imported", c.imported, ""),
            ("duplicate", c.duplicate, "already in the album, skipped"),
            ("rejected", c.rejected, "refused as images; listed above"),
            ("unreadable", c.unreadable, "could not be read; listed above"),
            ("skipped", c.journal, "imported by an earlier run (journal)"),
            ("skipped", c.not_image, "not images"),
            ("skipped", c.hidden, "hidden (name starts with a dot)"),
            ("skipped", c.other, "symlinks, special files, the data directory"),
        ]
        for name, value, note in rows:
            if value or name in ("imported", "duplicate", "rejected"):
                lines.append(f"  {name:<10} {value:>7}  {note}".rstrip())
        if self.stopped:
            left = c.total_files - c.files_done
            lines.append(f"stopped with {left} file(s) not sent: {self.stopped}")
            lines.append("run the same command again to continue")
        elif c.imported:
            lines.append(self.target.next_step)
        print("\n".join(lines), file=self.out, flush=True)
