"""`photoq doctor [--repair]`: the database against the data directory.

Finds photos whose original is missing, photos whose recorded outputs are missing, outputs that were not rendered
from their photo and files in a photo's folder that none of its outputs lists, originals and variant folders that
nothing references, and leftover temp files. With --repair it removes the orphans, strays and stale temp files,
re-queues the jobs whose outputs are missing or not the photo's, and marks photos without an original failed (they
cannot be repaired).

Safe beside a running server: the walk streams (os.scandir, one folder at a time, photos in pages), every write goes
through a Database method that re-checks inside one write transaction, and temp files younger than
TEMP_MIN_AGE_SECONDS may belong to an upload or render in progress, so they are left alone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .. import imaging
from ..config import Settings
from ..db import Database
from ..models import JobKind, Status
from ..storage import PARTIAL_OUTPUT_SUFFIX, Storage

TEMP_MIN_AGE_SECONDS = 3600.0
PHOTO_PAGE = 500
MISSING_ORIGINAL_ERROR = "The original file is missing from storage (found by photoq doctor); it cannot be processed."
FORMAT_OF_EXTENSION = {ext: fmt for fmt, ext in imaging.EXTENSIONS.items()}


@dataclass
class Report:
    repair: bool
    problems: int = 0
    repaired: int = 0

    def problem(self, text: str, fixed: bool | None = None, action: str = "") -> None:
        """One line per problem; `fixed` None when not repairing."""
        self.problems += 1
        suffix = ""
        if fixed is not None:
            if fixed:
                self.repaired += 1
            suffix = f"  -> {action}"
        print(f"  {text}{suffix}", flush=False)


def _recorded(relpath: str, outputs: dict) -> bool:
    stem, ext = os.path.splitext(os.path.basename(relpath))
    output = outputs.get(stem)
    return output is not None and output.format in (None, FORMAT_OF_EXTENSION.get(ext))


class Doctor:
    def __init__(self, settings: Settings, db: Database, storage: Storage, repair: bool, now: float | None = None):
        self.settings = settings
        self.db = db
        self.storage = storage
        self.report = Report(repair)
        self.now = time.time() if now is None else now
        self.outputs = {str(kind): {o.name: o for o in settings.outputs_for(str(kind))} for kind in JobKind}
        self.young_temp_files = 0

    def _old(self, entry: os.DirEntry) -> bool:
        try:
            return self.now - entry.stat(follow_symlinks=False).st_mtime >= TEMP_MIN_AGE_SECONDS
        except FileNotFoundError:
            return False

    async def run(self) -> int:
        print(f"photoq doctor: checking {self.storage.root}" + (" (repairing)" if self.report.repair else ""))
        await self.check_photos()
        await self.check_originals()
        await self.check_variants()
        await self.check_tmp()
        if self.young_temp_files:
            print(f"  ({self.young_temp_files} temp file(s) younger than {TEMP_MIN_AGE_SECONDS / 3600:.0f} hour "
                  "left alone: uploads or renders in progress, or swept at the next start)")
        report = self.report
        if report.problems == 0:
            print("healthy: no problems found")
            return 0
        if report.repair:
            left = report.problems - report.repaired
            print(f"{report.problems} problem(s) found, {report.repaired} repaired, {left} left")
            return 1 if left else 0
        print(f"{report.problems} problem(s) found; `photoq doctor --repair` fixes what can be fixed")
        return 1

    # -- photos: originals and outputs -------------------------------------------------------------------------

    async def check_photos(self) -> None:
        after = 0
        while True:
            page = await self.db.doctor_photos_page(after, PHOTO_PAGE)
            if not page:
                return
            after = page[-1]["id"]
            missing_originals: list[tuple[int, str]] = []
            missing_outputs: list[tuple[int, JobKind, list[str]]] = []
            foreign_outputs: list[tuple[int, JobKind, list[str]]] = []
            for photo in page:
                original = self.storage.original_path(photo["sha256"], photo["format"])
                if not original.exists():
                    missing_originals.append((photo["id"], str(original.relative_to(self.storage.root))))
                    continue
                foreign = self._foreign_outputs(photo)
                for kind in JobKind:
                    mine = [name for name in foreign if name in self.outputs[str(kind)]]
                    if mine:
                        foreign_outputs.append((photo["id"], kind, mine))
                    missing = [name for name in self._missing_outputs(photo, kind) if name not in foreign]
                    if missing:
                        missing_outputs.append((photo["id"], kind, missing))
                await self._check_stray_outputs(photo)
            await self._handle_missing_originals(missing_originals)
            await self._handle_missing_outputs(missing_outputs)
            await self._handle_foreign_outputs(foreign_outputs, {p["id"]: p for p in page})

    @staticmethod
    def _foreign_outputs(photo: dict) -> list[str]:
        """Outputs recorded for a photo that were not rendered from it: from another original (source_sha256, since
        schema version 4), written before the photo existed, or of another picture's shape (rows from before
        version 4, when a deleted photo's id could be given to a new one and its late job wrote there)."""
        foreign = []
        for name, row in photo["output_rows"].items():
            other_source = row["source_sha256"] is not None and row["source_sha256"] != photo["sha256"]
            too_old = row["created_at"] < photo["created_at"]
            w, h, pw, ph = row["width"], row["height"], photo["width"], photo["height"]
            # An output keeps its photo's aspect, up to rounding each side to a whole pixel.
            other_shape = abs(w * ph - h * pw) > (pw + ph) / 2 + 1
            if other_source or too_old or other_shape:
                foreign.append(name)
        return foreign

    async def _handle_foreign_outputs(self, foreign: list[tuple[int, JobKind, list[str]]], photos: dict) -> None:
        if not foreign:
            return
        requeued: set[tuple[int, JobKind]] = set()
        if self.report.repair:
            for photo_id, _, names in foreign:
                await self._remove_relpaths([self._output_relpath(photos[photo_id], name) for name in names])
            requeued = set(await self.db.doctor_requeue_missing_outputs(
                foreign, time.time(), self.settings.queue.max_attempts))
        for photo_id, kind, names in foreign:
            fixed = (photo_id, kind) in requeued
            files = ", ".join(os.path.basename(self._output_relpath(photos[photo_id], n)) for n in names)
            self.report.problem(
                f"output not of its photo: photo {photo_id} {kind} ({files}: rendered from another picture)",
                fixed=fixed if self.report.repair else None,
                action=f"removed, {kind} job re-queued" if fixed else "photo gone meanwhile",
            )

    def _output_relpath(self, photo: dict, name: str) -> str:
        configured = {**self.outputs["thumbnail"], **self.outputs["variant"]}
        fmt = photo["outputs"].get(name) or (configured[name].format if name in configured else "webp")
        return str(self.storage.variant_path(photo["id"], name, fmt).relative_to(self.storage.root))

    async def _check_stray_outputs(self, photo: dict) -> None:
        """Files in a photo's folder that none of its outputs lists (left by a job of another photo that had the same
        id, or by an output since dropped). A file young enough to belong to a render in progress is left alone,
        unless it is older than the photo itself."""
        folder = self.storage.variant_dir(photo["id"])
        recorded = photo["outputs"]
        stray = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(PARTIAL_OUTPUT_SUFFIX) or not entry.is_file(follow_symlinks=False):
                        continue  # temp files: see _check_partial_outputs
                    stem, ext = os.path.splitext(entry.name)
                    fmt = FORMAT_OF_EXTENSION.get(ext)
                    if stem in recorded and (recorded[stem] is None or recorded[stem] == fmt):
                        continue
                    try:
                        written = entry.stat(follow_symlinks=False).st_mtime
                    except FileNotFoundError:
                        continue
                    if written < photo["created_at"] - 1 or self.now - written >= TEMP_MIN_AGE_SECONDS:
                        stray.append(str(Path(entry.path).relative_to(self.storage.root)))
                    else:
                        self.young_temp_files += 1
        except FileNotFoundError:
            return
        if not stray:
            return
        removed: list[str] = []
        if self.report.repair:
            # Looked at again just before: a job may have recorded the output meanwhile.
            now_recorded = await self.db.photo_outputs(photo["id"])
            removed = [relpath for relpath in stray if not _recorded(relpath, now_recorded)]
            await self._remove_relpaths(removed)
        for relpath in stray:
            self.report.problem(f"stray output file: {relpath} (not one of photo {photo['id']}'s outputs)",
                                fixed=relpath in removed if self.report.repair else None,
                                action="removed" if relpath in removed else "kept: recorded meanwhile")

    def _missing_outputs(self, photo: dict, kind: JobKind) -> list[str]:
        configured = self.outputs[str(kind)]
        recorded = [name for name in photo["outputs"] if name in configured]
        expected = recorded or (list(configured) if photo[f"{kind}_status"] == Status.COMPLETE else [])
        # A file is looked for in the format it was written in: after a format change in the configuration the old
        # file is stale (`photoq reprocess` renders it again), not missing.
        return [name for name in expected if not self.storage.variant_path(
            photo["id"], name, photo["outputs"].get(name) or configured[name].format).exists()]

    async def _handle_missing_originals(self, missing: list[tuple[int, str]]) -> None:
        if not missing:
            return
        marked: set[int] = set()
        if self.report.repair:
            # Looked at again just before: the photo may have been deleted meanwhile (row first, then its files).
            still = [photo_id for photo_id, relpath in missing if not (self.storage.root / relpath).exists()]
            marked = set(await self.db.doctor_fail_missing_originals(
                still, MISSING_ORIGINAL_ERROR, time.time(), self.settings.queue.max_attempts))
        for photo_id, relpath in missing:
            self.report.problem(
                f"missing original: photo {photo_id} ({relpath})",
                fixed=False if self.report.repair else None,
                action="cannot be repaired; photo marked failed" if photo_id in marked else "cannot be repaired",
            )

    async def _handle_missing_outputs(self, missing: list[tuple[int, JobKind, list[str]]]) -> None:
        if not missing:
            return
        requeued: set[tuple[int, JobKind]] = set()
        if self.report.repair:
            requeued = set(await self.db.doctor_requeue_missing_outputs(
                missing, time.time(), self.settings.queue.max_attempts))
        for photo_id, kind, names in missing:
            files = ", ".join(self.storage.variant_path(photo_id, n, self.outputs[str(kind)][n].format).name
                              for n in names)
            fixed = (photo_id, kind) in requeued
            self.report.problem(
                f"missing output: photo {photo_id} {kind} ({files})",
                fixed=fixed if self.report.repair else None,
                action=f"{kind} job re-queued" if fixed else "photo gone meanwhile",
            )

    # -- originals/ ---------------------------------------------------------------------------------------------

    async def check_originals(self) -> None:
        root = self.storage.originals
        if not root.is_dir():
            return
        await self._check_originals_folder(root, depth=0)

    async def _check_originals_folder(self, folder, depth: int) -> None:
        """originals/ab/cd/<sha256><ext>: folders two deep, files in the second; anything else is an orphan."""
        files: list[tuple[str, str | None, str | None]] = []  # relpath, sha256, format
        subfolders = []
        with os.scandir(folder) as entries:
            for entry in entries:
                relpath = self._relpath(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    if depth < 2:
                        subfolders.append(entry.path)
                    else:
                        files.append((relpath, None, None))
                    continue
                stem, ext = os.path.splitext(entry.name)
                fmt = FORMAT_OF_EXTENSION.get(ext)
                named_well = depth == 2 and fmt is not None and len(stem) == 64 and \
                    relpath == self.storage.original_relpath(stem, fmt)
                files.append((relpath, stem if named_well else None, fmt if named_well else None))
            # The folder's entries are few (content addresses spread over 65536 folders); subfolders after it.
        if files:
            await self._check_original_files(files)
        for sub in subfolders:
            await self._check_originals_folder(sub, depth + 1)

    async def _check_original_files(self, files: list[tuple[str, str | None, str | None]]) -> None:
        shas = [sha for _, sha, _ in files if sha]
        photos, staged_paths, staged_shas = await self.db.doctor_original_references(
            [relpath for relpath, _, _ in files], shas)
        orphans = [(relpath, sha, fmt) for relpath, sha, fmt in files
                   if (sha, fmt) not in photos and sha not in staged_shas and relpath not in staged_paths]
        if not orphans:
            return
        removed: set[str] = set()
        if self.report.repair:
            removed = set(await self.db.doctor_remove_orphan_originals(orphans, self._remove_relpaths))
        for relpath, _, _ in orphans:
            self.report.problem(f"orphan original: {relpath} (no photo references it)",
                                fixed=relpath in removed if self.report.repair else None,
                                action="removed" if relpath in removed else "kept: referenced meanwhile")

    def _relpath(self, path: str) -> str:
        """A path found on disk as the database and the report name it: relative to the data directory."""
        return os.path.relpath(path, self.storage.root)

    async def _remove_relpaths(self, relpaths: list[str]) -> None:
        def remove() -> None:
            for relpath in relpaths:
                path = self.storage.root / relpath
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass

        await asyncio.to_thread(remove)

    # -- variants/ ----------------------------------------------------------------------------------------------

    async def check_variants(self) -> None:
        root = self.storage.variants
        if not root.is_dir():
            return
        with os.scandir(root) as buckets:
            bucket_paths = []
            for bucket in buckets:
                if bucket.is_dir(follow_symlinks=False) and len(bucket.name) == 2:
                    bucket_paths.append(bucket.path)  # at most 256
                else:
                    await self._orphan_variants([(self._relpath(bucket.path), None)])
        for bucket_path in bucket_paths:
            await self._check_bucket(bucket_path)

    async def _check_bucket(self, bucket_path: str) -> None:
        bucket = os.path.basename(bucket_path)
        candidates: list[tuple[str, int | None]] = []
        with os.scandir(bucket_path) as entries:
            for entry in entries:
                relpath = self._relpath(entry.path)
                photo_id = int(entry.name) if entry.name.isdigit() and entry.is_dir(follow_symlinks=False) else None
                if photo_id is not None and f"{photo_id % 256:02x}" != bucket:
                    photo_id = None
                candidates.append((relpath, photo_id))
        existing = await self.db.doctor_existing_photo_ids([i for _, i in candidates if i is not None])
        await self._orphan_variants([(relpath, i) for relpath, i in candidates if i not in existing])
        for relpath, photo_id in candidates:
            if photo_id in existing:
                await self._check_partial_outputs(self.storage.root / relpath)

    async def _orphan_variants(self, orphans: list[tuple[str, int | None]]) -> None:
        if not orphans:
            return
        removed: set[str] = set()
        if self.report.repair:
            removed = set(await self.db.doctor_remove_orphan_variant_dirs(orphans, self._remove_relpaths))
        for relpath, _ in orphans:
            self.report.problem(f"orphan variant folder: {relpath} (no such photo)",
                                fixed=relpath in removed if self.report.repair else None,
                                action="removed" if relpath in removed else "kept: its photo exists now")

    async def _check_partial_outputs(self, folder) -> None:
        stale = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(PARTIAL_OUTPUT_SUFFIX) and entry.is_file(follow_symlinks=False):
                        if self._old(entry):
                            stale.append(entry.path)
                        else:
                            self.young_temp_files += 1
        except FileNotFoundError:
            return
        await self._stale_temp(stale)

    # -- tmp/ ---------------------------------------------------------------------------------------------------

    async def check_tmp(self) -> None:
        if not self.storage.tmp.is_dir():
            return
        stale = []
        with os.scandir(self.storage.tmp) as entries:
            for entry in entries:
                if self._old(entry):
                    stale.append(entry.path)
                    if len(stale) >= PHOTO_PAGE:
                        await self._stale_temp(stale)
                        stale = []
                else:
                    self.young_temp_files += 1
        await self._stale_temp(stale)

    async def _stale_temp(self, paths: list[str]) -> None:
        if not paths:
            return
        relpaths = [self._relpath(p) for p in paths]
        if self.report.repair:
            await self._remove_relpaths(relpaths)
        for relpath in relpaths:
            self.report.problem(f"stale temp file: {relpath} (older than {TEMP_MIN_AGE_SECONDS / 3600:.0f} hour)",
                                fixed=True if self.report.repair else None, action="removed")
