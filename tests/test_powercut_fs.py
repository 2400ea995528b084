"""The forgetful filesystem's own rules (tests/powercut_fs.py): on a power cut, what was never fsynced is gone.

Each test fails rather than skips where FUSE is unavailable (a power-cut test that silently does not run proves
nothing); the fixture says why on one line.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .powercut_fs import FuseUnavailable, PowerCutFS


@pytest.fixture
def fs(tmp_path):
    with PowerCutFS(tmp_path / "fs") as mounted:
        yield mounted


def write(path: Path, data: bytes, sync: bool) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def test_a_write_without_fsync_is_gone(fs):
    root = fs.mountpoint
    write(root / "kept.txt", b"durable", sync=True)
    sync_dir(root)
    with open(root / "kept.txt", "r+b") as f:  # an in-place overwrite and an append, never synced
        f.write(b"CHANGED")
        f.seek(0, os.SEEK_END)
        f.write(b" and more")
    write(root / "never-synced.txt", b"volatile", sync=False)
    sync_dir(root)  # its name is durable, its content is not
    assert (root / "kept.txt").read_bytes() == b"CHANGED and more"

    fs.power_cut()
    assert (root / "kept.txt").read_bytes() == b"durable"
    assert (root / "never-synced.txt").read_bytes() == b""


def test_fsync_keeps_content_and_a_directory_fsync_keeps_the_rename(fs):
    root = fs.mountpoint
    (root / "final").mkdir()
    sync_dir(root)
    write(root / "upload.part", b"photo bytes", sync=True)
    os.replace(root / "upload.part", root / "final" / "photo.jpg")
    sync_dir(root / "final")
    sync_dir(root)

    fs.power_cut()
    assert (root / "final" / "photo.jpg").read_bytes() == b"photo bytes"
    assert not (root / "upload.part").exists()


def test_a_rename_without_a_directory_fsync_is_undone(fs):
    root = fs.mountpoint
    write(root / "upload.part", b"photo bytes", sync=True)
    sync_dir(root)
    os.replace(root / "upload.part", root / "photo.jpg")

    fs.power_cut()
    assert not (root / "photo.jpg").exists()
    assert (root / "upload.part").read_bytes() == b"photo bytes"


def test_a_rename_over_a_file_without_a_directory_fsync_brings_the_old_file_back(fs):
    root = fs.mountpoint
    write(root / "config", b"old", sync=True)
    write(root / "config.tmp", b"new", sync=True)
    sync_dir(root)
    os.replace(root / "config.tmp", root / "config")
    assert (root / "config").read_bytes() == b"new"

    fs.power_cut()
    assert (root / "config").read_bytes() == b"old"
    assert (root / "config.tmp").read_bytes() == b"new"


def test_a_create_or_mkdir_without_a_directory_fsync_is_gone_even_when_the_file_was_fsynced(fs):
    root = fs.mountpoint
    (root / "originals").mkdir()
    sync_dir(root)
    (root / "originals" / "ab").mkdir()  # the parent of "ab" is never synced
    write(root / "originals" / "ab" / "photo.jpg", b"photo", sync=True)
    sync_dir(root / "originals" / "ab")
    write(root / "created.txt", b"synced content", sync=True)

    fs.power_cut()
    assert os.listdir(root) == ["originals"]
    assert os.listdir(root / "originals") == []


def test_an_unlink_without_a_directory_fsync_is_undone(fs):
    root = fs.mountpoint
    write(root / "photo.jpg", b"photo", sync=True)
    sync_dir(root)
    os.unlink(root / "photo.jpg")

    fs.power_cut()
    assert (root / "photo.jpg").read_bytes() == b"photo"


def test_a_truncation_without_fsync_is_undone_and_one_with_fsync_is_kept(fs):
    root = fs.mountpoint
    write(root / "a", b"0123456789", sync=True)
    write(root / "b", b"0123456789", sync=True)
    sync_dir(root)
    for name, sync in (("a", False), ("b", True)):
        with open(root / name, "r+b") as f:
            f.truncate(2)
            f.seek(6)
            f.write(b"xy")  # the bytes between 2 and 6 are a hole now: zeros
            f.flush()
            if sync:
                os.fsync(f.fileno())

    fs.power_cut()
    assert (root / "a").read_bytes() == b"0123456789"
    assert (root / "b").read_bytes() == b"01\0\0\0\0xy"


def test_a_clean_unmount_keeps_everything(fs):
    root = fs.mountpoint
    write(root / "never-synced.txt", b"volatile", sync=False)
    fs.unmount(keep=True)
    fs.mount()
    assert (root / "never-synced.txt").read_bytes() == b"volatile"


def run_and_keep_wal(path: Path, synchronous: str) -> None:
    """Commit in a child process that is SIGKILLed right after, so nothing is checkpointed or closed cleanly."""
    script = (
        "import sqlite3, os, signal, sys\n"
        "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "assert db.execute('PRAGMA journal_mode = WAL').fetchone() == ('wal',)\n"
        "db.execute('PRAGMA synchronous = FULL')\n"
        "db.execute('CREATE TABLE t (x)')\n"
        "db.execute('PRAGMA wal_checkpoint(TRUNCATE)')\n"
        "db.execute('PRAGMA synchronous = ' + sys.argv[2])\n"
        "db.execute('INSERT INTO t VALUES (42)')\n"
        "assert db.execute('SELECT x FROM t').fetchall() == [(42,)]\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path), synchronous], check=False, capture_output=True,
                          text=True)
    assert done.returncode == -9, done.stderr


def rows_after_power_cut(fs: PowerCutFS, path: Path) -> list[tuple]:
    fs.power_cut()
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT x FROM t").fetchall()
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    return rows


def test_sqlite_wal_with_synchronous_full_keeps_a_committed_transaction(fs):
    path = fs.mountpoint / "queue.db"
    run_and_keep_wal(path, "FULL")
    assert (fs.mountpoint / "queue.db-wal").stat().st_size > 0
    assert rows_after_power_cut(fs, path) == [(42,)]


@pytest.mark.parametrize("synchronous", ["OFF", "NORMAL"])
def test_sqlite_wal_with_weaker_synchronous_loses_a_committed_transaction(fs, synchronous):
    path = fs.mountpoint / "queue.db"
    run_and_keep_wal(path, synchronous)
    # The commit is there after a SIGKILL alone (the kernel holds it): only a power cut shows the difference.
    # (read-only: a writable connection would checkpoint the WAL into the database, with an fsync, when closed)
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT x FROM t").fetchall() == [(42,)]
    db.close()
    assert rows_after_power_cut(fs, path) == []


def test_without_dev_fuse_the_power_cut_tests_fail_and_say_why(tmp_path, monkeypatch):
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == "/dev/fuse" else real_exists(p))
    with pytest.raises(FuseUnavailable, match="/dev/fuse is absent"):
        PowerCutFS(tmp_path / "fs").__enter__()
