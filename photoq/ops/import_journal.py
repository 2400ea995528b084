"""The journal of one `photoq import` (one folder into one album), so an interrupted import resumes where it stopped.

    data/imports/<key>.jsonl     key: a hash of the folder's real path and the album id

A header line, then one JSON line per file already in the album: its path relative to the folder, size, mtime and
sha256. A file is skipped by a later run while its size and mtime are unchanged. Lines are appended and fsynced
after each batch; a line torn by a crash is ignored, and each run starts by rewriting the journal atomically
(temp file, fsync, rename) without it. Losing the journal costs only time: the album's dedup by content still
keeps every file in it once.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TextIO

from ..durable import fsync_directory

VERSION = 1


def journal_path(data_dir: Path, folder: Path, album_id: int) -> Path:
    key = hashlib.sha256(f"{os.path.realpath(folder)}\n{album_id}".encode()).hexdigest()[:24]
    return Path(data_dir) / "imports" / f"{key}.jsonl"


class Journal:
    def __init__(self, path: Path, folder: Path, album_id: int):
        self.path = path
        self.header = {"photoq_import": VERSION, "folder": os.path.realpath(folder), "album_id": album_id}
        self.entries: dict[str, dict] = {}  # relative path -> {"size", "mtime_ns", "sha256"}
        self._file: TextIO | None = None

    def open(self, forget: bool = False) -> None:
        """Load what earlier runs recorded (nothing with `forget`), rewrite it cleanly, and open it for appending."""
        if not forget:
            self._load()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_name(self.path.name + ".tmp")
        with open(temp, "w", encoding="utf-8") as out:
            out.write(json.dumps(self.header) + "\n")
            for relpath, entry in self.entries.items():
                out.write(json.dumps({"path": relpath, **entry}) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, self.path)
        fsync_directory(self.path.parent)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (held for the run; close() closes it)

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return
        for line in lines[1:]:
            try:
                record = json.loads(line)
                self.entries[record["path"]] = {
                    "size": int(record["size"]), "mtime_ns": int(record["mtime_ns"]), "sha256": str(record["sha256"])}
            except (ValueError, KeyError, TypeError):
                continue  # the line a crash cut short

    def is_done(self, relpath: str, size: int, mtime_ns: int) -> bool:
        entry = self.entries.get(relpath)
        return entry is not None and entry["size"] == size and entry["mtime_ns"] == mtime_ns

    def record(self, done: list[tuple[str, int, int, str]]) -> None:
        """Files (relative path, size, mtime_ns, sha256) now in the album, durably, in one append."""
        if not done or self._file is None:
            return
        lines = []
        for relpath, size, mtime_ns, sha256 in done:
            entry = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256}
            self.entries[relpath] = entry
            lines.append(json.dumps({"path": relpath, **entry}) + "\n")
        self._file.write("".join(lines))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
