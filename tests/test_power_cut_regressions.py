"""What the power-cut chaos test (test_powercut.py) found, each pinned by a small test on the forgetful filesystem.

Every test here failed before its fix: the data was there after a SIGKILL (the kernel still held it) and gone after
a power cut.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing

import pytest
from PIL import Image

from photoq import imaging
from photoq.db import Database
from photoq.resumable import ResumableUploads
from photoq.storage import Storage

from .powercut_fs import PowerCutFS
from .support import jpeg


@pytest.fixture
def fs(tmp_path):
    with PowerCutFS(tmp_path / "fs") as mounted:
        yield mounted


def test_the_folders_made_at_start_survive_a_power_cut(fs):
    """Before: data/originals, variants, tmp and resumable were made with mkdir and no fsync of their parent."""
    storage = Storage(fs.mountpoint / "data")
    storage.prepare()
    ResumableUploads(storage.root / "resumable", fsync=True, expire_seconds=60).prepare()

    fs.power_cut()
    assert sorted(os.listdir(storage.root)) == ["originals", "resumable", "tmp", "variants"]
    assert len(os.listdir(storage.variants)) == 256  # the variant buckets, made once here


async def test_an_original_stored_in_new_folders_survives_a_power_cut(fs):
    """Before: originals/ab/cd/ was made with mkdir(parents=True) and only cd/ was fsynced, so ab/ could vanish."""
    storage = Storage(fs.mountpoint / "data")
    storage.prepare()
    fs.power_cut()
    upload = storage.new_upload_path()
    data = jpeg(64, 48)
    upload.write_bytes(data)
    relpath = storage.original_relpath("ab" * 32, "jpeg")
    await storage.store_original(upload, relpath)

    fs.power_cut()
    assert (storage.root / relpath).read_bytes() == data


def test_outputs_rendered_into_a_new_folder_survive_a_power_cut(fs, tmp_path):
    """Before: a photo's output folder was fsynced with its parent only when this render made it; the photo's other
    job, in another process, could find it made but not yet durable."""
    storage = Storage(fs.mountpoint / "data")
    storage.prepare()
    fs.power_cut()
    source = tmp_path / "source.jpg"
    source.write_bytes(jpeg(320, 240))
    dest = storage.variant_dir(4242)
    dest.mkdir()  # made by the other job a moment ago, its name not yet durable
    results = imaging.render(str(source), [imaging.OutputSpec("thumb", 64, 64, "webp")], str(dest))

    fs.power_cut()
    with Image.open(results[0].path) as image:
        image.load()


async def test_an_upload_cut_off_before_its_commit_leaves_no_orphan_original_after_a_second_cut(fs):
    """Before: at start-up the staged rows of uploads cut off before their commit were deleted (committed) and their
    originals unlinked without an fsync of their folder: a second power cut brought the files back, with no row
    left to say they should go (orphans for `photoq doctor`)."""
    storage = Storage(fs.mountpoint / "data")
    storage.prepare()
    db = Database(storage.database_path)
    await db.open()
    relpath = storage.original_relpath("cd" * 32, "jpeg")
    try:
        await db.stage_files([(relpath, "cd" * 32)], now=0.0)
        upload = storage.new_upload_path()
        upload.write_bytes(jpeg(64, 48))
        await storage.store_original(upload, relpath)  # ... and the power is cut before the photo's commit
    finally:
        await db.close()
    fs.power_cut()

    db = Database(storage.database_path)  # the next start
    await db.open()
    try:
        await db.unstage(None, storage.remove_relpaths)
        assert not (storage.root / relpath).exists()
    finally:
        await db.close()
    fs.power_cut()

    assert not (storage.root / relpath).exists()
    with closing(sqlite3.connect(storage.database_path)) as conn:
        assert conn.execute("SELECT count(*) FROM staged_files").fetchone() == (0,)


BOOKKEEPING_SCRIPT = """
import asyncio, os, signal, sys
from photoq.db import Database
from photoq.models import NewPhoto

async def main(path):
    now = [0.0]
    db = Database(path, clock=lambda: now[0])
    await db.open()
    album = await db.create_album("Cut", 0.0)  # commits with FULL, at t=0
    photo = NewPhoto("a.jpg", "ef" * 32, 1, 1, 1, "jpeg", "image/jpeg", None)
    await db.insert_photos(album.id, [photo], [], 0.0, 3)  # two jobs, FULL
    now[0] = 0.5
    await db.claim_jobs(0.0, 100.0, 1)  # bookkeeping within a second of the last sync: NORMAL
    now[0] = 5.0
    await db.claim_jobs(0.0, 100.0, 1)  # more than a second later: this one syncs, and the one before with it
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: as the power goes

asyncio.run(main(sys.argv[1]))
"""


def test_the_workers_bookkeeping_is_synced_at_least_every_second_of_activity(fs):
    """Before: claims and completions committed with synchronous = NORMAL only ever became durable with the next
    upload or WAL checkpoint; the power-cut chaos test redid up to 243 of its 400 jobs after its cuts."""
    path = fs.mountpoint / "photoq.db"
    done = subprocess.run([sys.executable, "-c", BOOKKEEPING_SCRIPT, str(path)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == -9, done.stderr
    fs.power_cut()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("SELECT status FROM jobs ORDER BY id").fetchall() == [("processing",), ("processing",)]


async def test_unstaging_removes_the_files_before_the_rows_are_committed_away(tmp_path):
    """The other order leaves a moment (commit done, files not yet removed) in which a power cut keeps files that no
    row names any more."""
    storage = Storage(tmp_path / "data")
    storage.prepare()
    db = Database(storage.database_path)
    await db.open()
    seen_rows = []

    async def remove_files(relpaths: list[str]) -> None:
        with closing(sqlite3.connect(f"file:{storage.database_path}?mode=ro", uri=True)) as conn:
            seen_rows.append(conn.execute("SELECT count(*) FROM staged_files").fetchone()[0])
        await storage.remove_relpaths(relpaths)

    try:
        await db.stage_files([(storage.original_relpath("12" * 32, "jpeg"), "12" * 32)], now=0.0)
        await db.unstage(None, remove_files)
        assert seen_rows == [1]  # still committed while the files go
    finally:
        await db.close()
    with closing(sqlite3.connect(storage.database_path)) as conn:
        assert conn.execute("SELECT count(*) FROM staged_files").fetchone() == (0,)
