"""`photoq import DIR --album NAME`: a real folder tree, the real command in a subprocess, with and without a server."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from photoq.db import Database

from .support import AUTH, TEST_TOKEN, ServerProcess, free_port, image_bytes, jpeg, wait_for_photos

IMAGES = 4  # image files in the tree made by make_tree, of which 3 distinct


def make_tree(root: Path) -> Path:
    """Nested folders with images, a duplicate pair, a non-image, hidden entries and a symlink out of the tree."""
    (root / "2019" / "trip").mkdir(parents=True)
    (root / "2020").mkdir()
    (root / ".thumbnails").mkdir()
    (root / "2019" / "a.jpg").write_bytes(jpeg(seed=1))
    (root / "2019" / "trip" / "b été.jpg").write_bytes(jpeg(seed=2))
    (root / "2020" / "c.png").write_bytes(image_bytes("PNG", seed=3))
    (root / "2020" / "copy of a.jpg").write_bytes(jpeg(seed=1))
    (root / "notes.txt").write_text("not a photo\n")
    (root / ".hidden.jpg").write_bytes(jpeg(seed=4))
    (root / ".thumbnails" / "t.jpg").write_bytes(jpeg(seed=5))
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "elsewhere.jpg").write_bytes(jpeg(seed=6))
    (root / "link-out").symlink_to(outside, target_is_directory=True)
    return root


def run_import(tmp_path: Path, *args, port: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`photoq import` against the data dir tmp_path/data; with no port, one where no server listens (direct mode)."""
    env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN, "PHOTOQ_PORT": str(port or free_port())}
    env.pop("PHOTOQ_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "photoq", "import", *args, "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env, **kwargs)


def summary(result: subprocess.CompletedProcess | str) -> dict[str, int]:
    """The summary's rows: {"imported": n, "duplicate": n, "skipped <note's first word>": n, ...}."""
    rows = {}
    stdout = result if isinstance(result, str) else result.stdout
    for line in stdout.splitlines():
        if line.startswith("  "):
            name, value, *note = line.split(maxsplit=2)
            rows[name if name != "skipped" else f"skipped {note[0].split()[0]}"] = int(value)
    return rows


async def album_photos(data: Path) -> dict[str, list[dict]]:
    """album name -> its photos (filename, sha256, statuses), read from the database."""
    db = Database(data / "photoq.db")
    await db.open()
    try:
        result = {}
        for album in await db.list_albums():
            photos = await db.list_photos(album.id, None, 1000, 0)
            result[album.name] = [{"id": p.id, "filename": p.filename, "sha256": p.sha256,
                                   "status": str(p.processing_status)} for p in photos]
        return result
    finally:
        await db.close()


async def job_counts(data: Path) -> dict[str, int]:
    db = Database(data / "photoq.db")
    await db.open()
    try:
        return await db.job_counts()
    finally:
        await db.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "photos")


@pytest.fixture
def server(tmp_path):
    server = ServerProcess(tmp_path / "data", workers=1)
    yield server
    server.stop()


# -- without a server --------------------------------------------------------------------------------------------


async def test_direct_import_stores_originals_photos_and_jobs_that_the_next_serve_processes(tmp_path, tree):
    result = run_import(tmp_path, str(tree), "--album", "Holiday")
    assert result.returncode == 0, result.stderr
    assert "no photoq server answered" in result.stderr
    assert summary(result) == {"imported": 3, "duplicate": 1, "rejected": 0, "skipped not": 1, "skipped hidden": 2,
                               "skipped symlinks,": 1}
    assert "processed when `photoq serve` next starts" in result.stdout

    data = tmp_path / "data"
    photos = (await album_photos(data))["Holiday"]
    # Sorted paths: 2019/a.jpg, 2019/trip/b été.jpg, 2020/c.png ("2020/copy of a.jpg" is a's duplicate).
    assert [p["filename"] for p in photos] == ["a.jpg", "b été.jpg", "c.png"]
    assert [p["sha256"] for p in photos] == [sha(jpeg(seed=1)), sha(jpeg(seed=2)), sha(image_bytes("PNG", seed=3))]
    assert all(p["status"] == "pending" for p in photos)
    for p, ext in zip(photos, (".jpg", ".jpg", ".png")):
        original = data / "originals" / p["sha256"][:2] / p["sha256"][2:4] / f"{p['sha256']}{ext}"
        assert sha(original.read_bytes()) == p["sha256"]
    assert (await job_counts(data))["pending"] == 6
    assert list((data / "tmp").iterdir()) == []

    server = ServerProcess(data, workers=1)
    try:
        server.start()
        async with aiohttp.ClientSession(base_url=server.url) as session:
            done = await wait_for_photos(session, [p["id"] for p in photos])
        assert all(state["processing_status"] == "complete" for state in done.values())
    finally:
        server.stop()


async def test_a_rerun_skips_everything_by_the_journal_and_without_it_by_content(tmp_path, tree):
    assert run_import(tmp_path, str(tree), "--album", "Holiday").returncode == 0
    before = await album_photos(tmp_path / "data")

    again = run_import(tmp_path, str(tree), "--album", "Holiday")
    assert again.returncode == 0, again.stderr
    rows = summary(again)
    assert rows["imported"] == 0 and rows["duplicate"] == 0 and rows["skipped imported"] == IMAGES
    assert "(id 1)" in again.stdout and "created" not in again.stdout

    recheck = run_import(tmp_path, str(tree), "--album", "Holiday", "--recheck")
    assert recheck.returncode == 0, recheck.stderr
    assert summary(recheck)["imported"] == 0 and summary(recheck)["duplicate"] == IMAGES

    for journal in (tmp_path / "data" / "imports").iterdir():
        journal.unlink()
    without = run_import(tmp_path, str(tree), "--album", "Holiday")
    assert without.returncode == 0, without.stderr
    assert summary(without)["imported"] == 0 and summary(without)["duplicate"] == IMAGES
    assert await album_photos(tmp_path / "data") == before


async def test_a_journal_line_torn_by_a_crash_is_ignored_and_the_journal_rewritten(tmp_path, tree):
    assert run_import(tmp_path, str(tree), "--album", "Holiday").returncode == 0
    journal = next((tmp_path / "data" / "imports").iterdir())
    with open(journal, "a") as f:
        f.write('{"path": "2020/c.png", "size": 12')  # a power cut in the middle of an append
    again = run_import(tmp_path, str(tree), "--album", "Holiday")
    assert again.returncode == 0, again.stderr
    assert summary(again)["skipped imported"] == IMAGES
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert records[0]["album_id"] == 1 and len(records) == 1 + IMAGES


async def test_a_changed_file_is_offered_again(tmp_path, tree):
    assert run_import(tmp_path, str(tree), "--album", "Holiday").returncode == 0
    (tree / "2020" / "c.png").write_bytes(image_bytes("PNG", seed=30))
    again = run_import(tmp_path, str(tree), "--album", "Holiday")
    assert summary(again)["imported"] == 1 and summary(again)["skipped imported"] == IMAGES - 1
    assert len((await album_photos(tmp_path / "data"))["Holiday"]) == 4


@pytest.mark.parametrize("mode", ["direct", "server"])
async def test_killed_part_way_and_run_again_imports_every_file_exactly_once(tmp_path, mode):
    server = ServerProcess(tmp_path / "data", workers=1)
    if mode == "server":
        server.start()
    try:
        await killed_and_run_again(tmp_path, server.port)
    finally:
        server.stop()


async def killed_and_run_again(tmp_path: Path, port: int) -> None:
    """kill -9 an import once the journal shows progress, run it again: each file is in the album once."""
    files = 200
    tree = tmp_path / "many"
    for i in range(files):
        folder = tree / f"roll-{i // 50}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img-{i:03d}.jpg").write_bytes(jpeg(160, 120, seed=100 + i))
    args = [sys.executable, "-m", "photoq", "import", str(tree), "--album", "Many", "--batch-files", "1",
            "--data-dir", str(tmp_path / "data")]
    env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN, "PHOTOQ_PORT": str(port)}
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    imports = tmp_path / "data" / "imports"
    recorded = 0
    try:
        while recorded < 5:  # the journal shows progress: files are going in
            assert process.poll() is None, "the import ended before it could be interrupted"
            journals = list(imports.glob("*.jsonl")) if imports.is_dir() else []
            recorded = len(journals[0].read_text().splitlines()) - 1 if journals else 0
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(10)
    assert process.returncode == -signal.SIGKILL
    in_album = len((await album_photos(tmp_path / "data"))["Many"])
    assert 5 <= in_album < files

    again = run_import(tmp_path, str(tree), "--album", "Many", port=port)
    assert again.returncode == 0, again.stderr
    rows = summary(again)
    assert rows["skipped imported"] >= 5
    # A server may still commit the one request that was in flight when its client died.
    assert files - in_album - 1 <= rows["imported"] <= files - in_album
    assert rows["imported"] + rows["duplicate"] + rows["skipped imported"] == files

    photos = (await album_photos(tmp_path / "data"))["Many"]
    assert sorted(p["sha256"] for p in photos) == sorted(sha(jpeg(160, 120, seed=100 + i)) for i in range(files))
    doctor = subprocess.run([sys.executable, "-m", "photoq", "doctor", "--data-dir", str(tmp_path / "data")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert doctor.returncode == 0, doctor.stdout


async def test_the_album_is_chosen_by_name_created_once_and_an_ambiguous_name_is_refused(tmp_path, tree):
    first = run_import(tmp_path, str(tree / "2019"), "--album", "  Holiday ")
    assert first.returncode == 0, first.stderr
    assert '"Holiday" (id 1, created)' in first.stdout
    second = run_import(tmp_path, str(tree / "2020"), "--album", "Holiday")
    assert second.returncode == 0, second.stderr
    assert '"Holiday" (id 1)' in second.stdout and "created" not in second.stdout
    photos = (await album_photos(tmp_path / "data"))["Holiday"]
    assert [p["filename"] for p in photos] == ["a.jpg", "b été.jpg", "c.png"]

    db = Database(tmp_path / "data" / "photoq.db")
    await db.open()
    await db.create_album("Holiday", time.time())
    await db.close()
    ambiguous = run_import(tmp_path, str(tree), "--album", "Holiday")
    assert ambiguous.returncode == 2
    assert "2 albums are named \"Holiday\" (ids 1, 2); choose one with --album-id" in ambiguous.stderr
    by_id = run_import(tmp_path, str(tree), "--album-id", "2")
    assert by_id.returncode == 0, by_id.stderr
    assert summary(by_id)["imported"] == 3

    assert run_import(tmp_path, str(tree), "--album-id", "99").returncode == 2
    assert run_import(tmp_path, str(tmp_path / "nowhere"), "--album", "X").returncode == 2
    assert run_import(tmp_path, str(tree), "--album", "bad\nname").returncode == 2


async def test_nothing_to_import_creates_no_album(tmp_path):
    (tmp_path / "empty" / ".git").mkdir(parents=True)
    (tmp_path / "empty" / "readme.md").write_text("hi")
    result = run_import(tmp_path, str(tmp_path / "empty"), "--album", "Nothing")
    assert result.returncode == 0, result.stderr
    assert await album_photos(tmp_path / "data") == {}


async def test_no_recursive_imports_only_the_top_folder(tmp_path, tree):
    (tree / "top.jpg").write_bytes(jpeg(seed=7))
    result = run_import(tmp_path, str(tree), "--album", "Top", "--no-recursive")
    assert result.returncode == 0, result.stderr
    assert [p["filename"] for p in (await album_photos(tmp_path / "data"))["Top"]] == ["top.jpg"]


async def test_the_data_directory_inside_the_folder_is_not_imported(tmp_path, tree):
    assert run_import(tmp_path, str(tree), "--album", "Holiday").returncode == 0
    whole = run_import(tmp_path, str(tmp_path), "--album", "Everything", "--verbose")
    assert whole.returncode == 0, whole.stderr
    assert "skipped (photoq's data directory): data" in whole.stderr
    assert "skipped (symlink): photos/link-out" in whole.stderr
    # photos/ holds 4 images, 3 distinct; outside/ (imported here as a folder of its own, not through the link) 1.
    assert summary(whole)["imported"] == 4 and summary(whole)["duplicate"] == 1
    assert "originals" not in whole.stderr


def without_root_file_access() -> dict:
    """subprocess arguments under which chmod 000 restricts: as root, the child drops CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from its capability bounding set before it runs (so it has neither after exec)."""
    if os.geteuid() != 0:
        return {}
    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=drop, check=True)
    except (subprocess.SubprocessError, OSError):
        pytest.skip("running as root without the right to drop file-access capabilities")
    return {"preexec_fn": drop}


async def test_unreadable_and_rejected_files_are_reported_and_the_rest_imported(tmp_path, tree):
    (tree / "2019" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20)
    locked = tree / "2019" / "trip" / "locked.jpg"
    locked.write_bytes(jpeg(seed=8))
    locked.chmod(0)
    result = run_import(tmp_path, str(tree), "--album", "Holiday", **without_root_file_access())
    assert result.returncode == 1, result.stderr
    assert "unreadable: 2019/trip/locked.jpg: Permission denied" in result.stderr
    assert "rejected: 2019/broken.jpg:" in result.stderr and "(corrupt_image)" in result.stderr
    rows = summary(result)
    assert rows["imported"] == 3 and rows["duplicate"] == 1 and rows["rejected"] == 1 and rows["unreadable"] == 1
    photos = (await album_photos(tmp_path / "data"))["Holiday"]
    assert [p["filename"] for p in photos] == ["a.jpg", "b été.jpg", "c.png"]


def test_when_not_a_terminal_progress_is_plain_lines(tmp_path, tree):
    result = run_import(tmp_path, str(tree), "--album", "Holiday")
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("photoq import: 4 file(s), ") and "into album \"Holiday\"" in line for line in lines)
    assert "photoq import: 4/4 files  " in result.stderr and "imported 3, duplicate 1, rejected 0" in lines[-1]


def test_on_a_terminal_progress_is_one_line_rewritten_in_place(tmp_path, tree):
    leader, follower = pty.openpty()
    env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN, "PHOTOQ_PORT": str(free_port())}
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "photoq", "import", str(tree), "--album", "Holiday",
             "--data-dir", str(tmp_path / "data")],
            stdout=subprocess.PIPE, stderr=follower, cwd=tmp_path, env=env, text=True)
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the import has exited and its terminal output is drained
                break
            if not chunk:
                break
            shown += chunk
        stdout = process.communicate(timeout=120)[0]
    finally:
        os.close(leader)
    assert process.returncode == 0
    text = shown.decode()
    assert "\r" in text and "4/4 files" in text and "imported 3, duplicate 1, rejected 0" in text
    assert "photoq import: 4/4 files" not in text  # the plain-line form is for pipes
    assert summary(stdout)["imported"] == 3


def test_quiet_prints_only_problems(tmp_path, tree):
    (tree / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 20)
    result = run_import(tmp_path, str(tree), "--album", "Holiday", "--quiet")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().startswith("rejected: broken.jpg:") and len(result.stderr.strip().splitlines()) == 1


def test_a_nearly_full_disk_stops_the_direct_import(tmp_path, tree):
    config = tmp_path / "config.toml"
    config.write_text(f"[storage]\nmin_free_bytes = {2 ** 62}\n")
    result = run_import(tmp_path, str(tree), "--album", "Holiday", "--config", str(config))
    assert result.returncode == 1
    assert "is nearly full" in result.stderr and "run the same command again to continue" in result.stdout


# -- through a running server -------------------------------------------------------------------------------------


async def test_import_through_a_running_server_uploads_in_batches_and_the_photos_complete(tmp_path, tree, server):
    server.start()
    result = run_import(tmp_path, str(tree), "--album", "Holiday", port=server.port)
    assert result.returncode == 0, result.stderr
    assert f"through the running server at http://127.0.0.1:{server.port}" in result.stderr
    assert summary(result)["imported"] == 3 and summary(result)["duplicate"] == 1
    assert server.log().count('"POST /api/albums/1/photos" 202') == 1  # all four files in one request

    async with aiohttp.ClientSession(base_url=server.url) as session:
        async with session.get("/api/albums/1/photos", headers=AUTH) as r:
            photos = (await r.json())["photos"]
        assert [p["filename"] for p in photos] == ["a.jpg", "b été.jpg", "c.png"]
        await wait_for_photos(session, [p["id"] for p in photos])

    again = run_import(tmp_path, str(tree), "--album", "Holiday", port=server.port)
    assert summary(again)["skipped imported"] == IMAGES and summary(again)["imported"] == 0
    recheck = run_import(tmp_path, str(tree), "--album", "Holiday", "--recheck", port=server.port)
    assert summary(recheck)["duplicate"] == IMAGES  # the server's dedup


async def test_an_album_busy_with_the_import_itself_keeps_accepting_its_batches(tmp_path, tree, server):
    server.config = tmp_path / "config.toml"
    server.config.write_text("[upload]\nblock_while_processing = true\n")
    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await session.post("/api/admin/queue/pause", headers=AUTH)  # the album stays busy with the first batch
    result = run_import(tmp_path, str(tree), "--album", "Holiday", "--batch-files", "1", port=server.port)
    assert result.returncode == 0, result.stderr
    assert summary(result)["imported"] == 3 and "waiting" not in result.stderr
    assert server.log().count('"POST /api/albums/1/photos" 409') == 0


async def test_a_full_queue_makes_the_import_wait_and_go_on(tmp_path, tree, server):
    server.config = tmp_path / "config.toml"
    server.config.write_text("[queue]\nmax_pending = 2\n")  # one photo's two jobs fill it
    server.start()
    async with aiohttp.ClientSession(base_url=server.url) as session:
        await session.post("/api/admin/queue/pause", headers=AUTH)
        env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN, "PHOTOQ_PORT": str(server.port)}
        process = subprocess.Popen(
            [sys.executable, "-m", "photoq", "import", str(tree / "2019"), "--album", "Holiday", "--batch-files", "1",
             "--data-dir", str(tmp_path / "data"), "--config", str(server.config)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            waiting = ""
            while "queue is full; waiting" not in waiting:
                line = process.stderr.readline()
                assert line, "the import ended without waiting"
                waiting = line
            await session.post("/api/admin/queue/resume", headers=AUTH)
            stdout, stderr = process.communicate(timeout=240)  # Retry-After is 60 s
        finally:
            process.kill()
    assert process.returncode == 0, stderr
    assert summary(stdout)["imported"] == 2
    assert server.log().count('"POST /api/albums/1/photos" 503') >= 1


async def test_rate_limited_requests_wait_and_go_on(tmp_path, tree, server):
    server.config = tmp_path / "config.toml"
    # Four requests' worth: finding the server, listing and creating the album, the first upload; then 1 per 2 s.
    server.config.write_text("[ratelimit]\ncapacity = 4\nrefill_per_second = 0.5\n")
    server.start()
    result = run_import(tmp_path, str(tree), "--album", "Holiday", "--batch-files", "1", port=server.port)
    assert result.returncode == 0, result.stderr
    assert "too many requests; waiting" in result.stderr
    assert summary(result)["imported"] == 3 and summary(result)["duplicate"] == 1
    assert server.log().count('"POST /api/albums/1/photos" 429') >= 1


async def test_a_server_out_of_disk_stops_the_import_with_its_message(tmp_path, tree, server):
    server.config = tmp_path / "config.toml"
    server.config.write_text(f"[storage]\nmin_free_bytes = {2 ** 62}\n")
    server.start()
    result = run_import(tmp_path, str(tree), "--album", "Holiday", port=server.port)
    assert result.returncode == 1
    assert "the server's disk is full: The server's disk is nearly full" in result.stderr
    assert "stopped with 4 file(s) not sent" in result.stdout
    journal = next((tmp_path / "data" / "imports").iterdir())
    assert [json.loads(line) for line in journal.read_text().splitlines()][1:] == []
