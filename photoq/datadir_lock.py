"""One server per data directory: with the embedded SQLite database, `photoq serve` holds an exclusive lock for its
whole life, so a second server on the same directory is refused before it touches anything (its start-up sweep
would delete the first one's uploads in flight, and it would run the first one's jobs again).

The lock is an flock on `serve.lock` in the data directory, which also holds the owner's pid for the message. The
kernel drops it when the process dies, however it dies: a `kill -9` leaves no stale lock behind. Operator commands
(status, doctor, import, retry-failed, login-url, reprocess) do not take it; they are safe beside a running server.

Several nodes sharing one directory over PostgreSQL (cluster mode) is the one allowed case: there the lock is not
taken, and each node sweeps only its own temp files (see Storage.sweep_temp).
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from .config import Settings

LOCK_NAME = "serve.lock"


def uses_embedded_database(settings: Settings) -> bool:
    """The one place that decides "SQLite in the data directory?": True unless a database URL is configured."""
    database = getattr(settings, "database", None)  # [database] url arrives with cluster mode
    return not getattr(database, "url", None)


class DataDirBusy(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, data_dir: Path, holder: str):
        self.data_dir = data_dir
        self.holder = holder
        super().__init__(f"another photoq server ({holder}) is already serving {data_dir}; "
                         f"stop it first or use another data directory")


class DataDirLock:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise DataDirBusy at once (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataDirBusy(self.path.parent, holder) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid.isdigit() else "pid unknown"
