"""Making names durable: what a power cut keeps is only what was fsynced, directories included.

A new file or directory survives a power cut only once the directory holding its name is fsynced; a rename only
once the directory it lands in (and, to forget the old name, the one it left) is. Standard library only: used by
storage (uploads), imaging (outputs, in the image processes) and tus (resumable uploads).
"""

from __future__ import annotations

import os
import threading

# One creator at a time in a process: another thread must not find a directory that exists but whose name is not
# durable yet, and put a file in it that it then acknowledges.
_creating = threading.Lock()


def fsync_directory(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs(path: str | os.PathLike[str], fsync: bool = True) -> bool:
    """Create `path` and any missing parents, like os.makedirs(exist_ok=True), then fsync the directory holding each
    one it created, so none of them (and nothing later put in them) vanishes in a power cut. True when it created
    `path`."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return False
    with _creating:
        missing = []
        while not os.path.isdir(path):
            missing.append(path)
            parent = os.path.dirname(path)
            if parent == path:
                break
            path = parent
        if not missing:
            return False
        os.makedirs(missing[0], exist_ok=True)
        if fsync:
            for created in missing:  # deepest first; each one's parent holds its name
                fsync_directory(os.path.dirname(created))
        return True
