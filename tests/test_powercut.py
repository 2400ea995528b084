"""Power cuts: a real `photoq serve` runs on a filesystem that forgets what was never fsynced (tests/powercut_fs.py).

At random moments the power is cut: the server's whole process group is SIGKILLed and everything the disk did not
hold durably (unsynced writes, renames, creates, SQLite WAL frames) is dropped; then photoq starts again on what is
left. A SIGKILL alone keeps the kernel's page cache, so only this shows a missing fsync or a too-weak SQLite setting.

Every upload that was answered 202 must survive with its original byte for byte and all its outputs; nothing twice;
every output decodes; `photoq doctor` finds nothing. The moments come from a seed printed at the start
(PHOTOQ_POWERCUT_SEED replays a run).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from .powercut_fs import PowerCutFS
from .support import AUTH, TEST_TOKEN, ServerProcess, multipart, noisy_png, wait_for_photos
from .test_chaos import CONNECTIONS, PHOTOS, Run, check_outputs, check_store, make_files, read_db
from .test_tus import resumed_uploader, send_part_of_body, uploader

SEED = int(os.environ.get("PHOTOQ_POWERCUT_SEED", "1515"))
CUTS = 10


class PoweredServer:
    """`photoq serve` with its data directory on the forgetful filesystem; its log stays off that filesystem."""

    def __init__(self, workdir: Path, workers: int = 2):
        self.workdir = workdir
        self.fs = PowerCutFS(workdir / "disk")
        self.fs.backing.mkdir(parents=True)
        (self.fs.backing / "data").mkdir()  # made before the first mount: durable, as after an install
        self.data_dir = self.fs.mountpoint / "data"
        self.server = ServerProcess(self.data_dir, workers=workers)
        self.server.log_path = workdir / "server.log"
        self.lost_completions = 0
        self.fsyncs = {"fsync": 0, "fsyncdir": 0}

    def __enter__(self) -> PoweredServer:
        self.fs.__enter__()
        self.server.start(timeout=60)
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.fs.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.url

    def complete_jobs(self) -> set[int]:
        return {row[0] for row in read_db(self.data_dir, "SELECT id FROM jobs WHERE status = 'complete'")}

    def power_cut(self) -> dict:
        """Kill the server's process group, drop what was not durable, start photoq again. Returns figures."""
        self.server.kill9()
        before = self.complete_jobs()  # what the kernel still holds: a SIGKILL alone would keep all of it
        stats = self.fs.power_cut()
        after = self.complete_jobs() if (self.data_dir / "photoq.db").exists() else set()
        lost = len(before - after)
        self.lost_completions += lost
        for kind in self.fsyncs:
            self.fsyncs[kind] += stats[kind]
        self.server.start(timeout=60)
        return {"jobs_complete_before": len(before), "completions_lost": lost,
                "fsyncs": stats["fsync"], "dir_fsyncs": stats["fsyncdir"], "unsynced_files": stats["unsynced_files"]}


def doctor(data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN}
    env.pop("PHOTOQ_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "photoq", "doctor", "--data-dir", str(data_dir)], check=False,
                          capture_output=True, text=True, env=env, cwd=data_dir.parent, timeout=300)


def check_acknowledged(run: Run, data_dir: Path) -> None:
    """Every upload answered 202 (or 200, a duplicate of one) is a photo row with its sha256, after any cut."""
    rows = dict(read_db(data_dir, "SELECT id, sha256 FROM photos"))
    lost = {i: pid for i, pid in run.photo_id.items() if rows.get(pid) != run.shas[i]}
    assert not lost, f"{len(lost)} acknowledged upload(s) lost or changed by a power cut: {sorted(lost.items())[:10]}"


async def test_power_cuts_at_random_moments_lose_nothing_acknowledged(tmp_path):
    print(f"\npower-cut seed {SEED} (PHOTOQ_POWERCUT_SEED={SEED} replays this run)")
    rng = random.Random(SEED)
    files = make_files(rng)
    run = Run(files, [hashlib.sha256(data).hexdigest() for _, data in files])
    assert len(set(run.shas)) == PHOTOS
    # Cut moments: three or four while photos are being accepted (after the n-th 202), the rest while they are
    # processed (after the n-th photo is complete).
    during_ingest = rng.choice([3, 4])
    thresholds = [("accepted", n) for n in sorted(rng.sample(range(5, PHOTOS - 5), during_ingest))]
    thresholds += [("complete", n) for n in sorted(rng.sample(range(5, PHOTOS - 5), CUTS - during_ingest))]
    batches = []
    index = 0
    while index < PHOTOS:
        size = rng.choice([1, 1, 2, 3])
        batches.append(list(range(index, min(index + size, PHOTOS))))
        index += size

    started = time.monotonic()
    with PoweredServer(tmp_path) as powered:
        data_dir = powered.data_dir
        up = asyncio.Event()
        up.set()
        async with aiohttp.ClientSession(base_url=powered.url,
                                         connector=aiohttp.TCPConnector(limit=CONNECTIONS + 2)) as session:
            async with session.post("/api/albums", json={"name": "Power cuts"}, headers=AUTH) as r:
                assert r.status == 201
                album = (await r.json())["id"]
            pending: asyncio.Queue[list[int]] = asyncio.Queue()
            for batch in batches:
                pending.put_nowait(batch)
            all_accepted = asyncio.Event()
            complete = {"count": 0}

            async def uploader_task() -> None:
                while not all_accepted.is_set():
                    try:
                        batch = await asyncio.wait_for(pending.get(), 0.2)
                    except TimeoutError:
                        continue
                    await up.wait()
                    run.in_flight.update(batch)
                    try:
                        async with session.post(f"/api/albums/{album}/photos", headers=AUTH,
                                                data=multipart(*[files[i] for i in batch]),
                                                timeout=aiohttp.ClientTimeout(total=120)) as r:
                            status, body = r.status, await r.json()
                    except (aiohttp.ClientError, ConnectionError, TimeoutError):
                        run.retried_after_kill += len(batch)
                        pending.put_nowait(batch)  # no answer: the client sends the same files again
                        await asyncio.sleep(0.05)
                        continue
                    finally:
                        run.in_flight.difference_update(batch)
                    if status in (429, 503):
                        pending.put_nowait(batch)
                        await asyncio.sleep(1)
                        continue
                    assert status in (200, 202), (status, body)
                    run.record(batch, body["photos"])
                    if len(run.photo_id) == PHOTOS:
                        all_accepted.set()

            async def power_cutter() -> None:
                for kind, threshold in thresholds:
                    while (len(run.photo_id) if kind == "accepted" else complete["count"]) < threshold:
                        try:
                            async with session.get("/api/stats", headers=AUTH) as r:
                                complete["count"] = (await r.json())["complete"]
                        except (aiohttp.ClientError, ConnectionError):
                            pass
                        await asyncio.sleep(0.1)
                    up.clear()
                    moment = {"after": f"{threshold} {kind}", "accepted": len(run.photo_id),
                              "complete": complete["count"], "in_flight": len(run.in_flight),
                              "t": round(time.monotonic() - started, 1)}
                    acknowledged = Run(files, run.shas, dict(run.photo_id))  # answered before the cut
                    moment.update(await asyncio.to_thread(powered.power_cut))
                    # Recovery is done before the server listens: every acknowledged upload is there, rows and
                    # originals match one to one, every original is whole, nothing temporary is left.
                    check_acknowledged(acknowledged, data_dir)
                    check_store(data_dir)
                    run.kills.append(moment)
                    print(f"cut {len(run.kills)}: {moment}")
                    up.set()

            await asyncio.gather(power_cutter(), *(uploader_task() for _ in range(CONNECTIONS)))

            ids = list(run.photo_id.values())
            await wait_for_photos(session, ids, timeout=600)

        # Once all is complete, one more cut: "complete" must be durable, not only in the page cache.
        final = await asyncio.to_thread(powered.power_cut)
        print(f"cut after all were complete: {final}")
        async with aiohttp.ClientSession(base_url=powered.url) as session:
            await wait_for_photos(session, ids, timeout=600)
            async with session.get(f"/api/albums/{album}/photos?limit=500", headers=AUTH) as r:
                photos = (await r.json())["photos"]
        powered.server.terminate()
        checked = doctor(data_dir)

        print(f"{len(run.kills)} power cuts (+1 after completion), {PHOTOS} photos, "
              f"{run.retried_after_kill} uploads sent again (no answer before a cut), "
              f"{powered.lost_completions} jobs re-run because their completion was lost, "
              f"{powered.fsyncs['fsync']} file and {powered.fsyncs['fsyncdir']} folder fsyncs in all, "
              f"{time.monotonic() - started:.1f}s")
        assert checked.returncode == 0 and "healthy: no problems found" in checked.stdout, \
            checked.stdout + checked.stderr
        assert len(run.kills) == CUTS
        assert any(k["accepted"] < PHOTOS for k in run.kills), "no cut landed during ingest"
        assert any(0 < k["complete"] < PHOTOS for k in run.kills), "no cut landed during processing"

        # Every file that got a 202 is one photo, complete, with its own bytes; none twice.
        assert sorted(run.photo_id) == list(range(PHOTOS))
        assert len(set(run.photo_id.values())) == PHOTOS
        assert len(photos) == PHOTOS and all(p["processing_status"] == "complete" for p in photos)
        by_id = {p["id"]: p for p in photos}
        for index, photo_id in run.photo_id.items():
            assert by_id[photo_id]["sha256"] == run.shas[index]
            assert by_id[photo_id]["filename"] == files[index][0]
        sha_to_id = check_store(data_dir)  # originals byte-identical: their sha256 is computed again from disk
        assert set(sha_to_id) == set(run.shas)
        check_outputs(data_dir, set(sha_to_id.values()))
        assert read_db(data_dir, "SELECT status, count(*) FROM jobs GROUP BY status") == [("complete", 2 * PHOTOS)]


async def test_a_resumable_upload_keeps_every_offset_the_server_reported_across_power_cuts(tmp_path):
    rng = random.Random(SEED)
    data = noisy_png(900, 700, seed=rng.randrange(1 << 30))  # ~1.9 MB, sent in 256 KiB chunks
    chunk = 256 * 1024
    with PoweredServer(tmp_path, workers=1) as powered:
        async with aiohttp.ClientSession(base_url=powered.url) as session:
            async with session.post("/api/albums", json={"name": "Resumable"}, headers=AUTH) as r:
                album = (await r.json())["id"]

        def first_chunks():
            up = uploader(powered.url, data, album, "resumable.png", chunk_size=chunk)
            up.upload(stop_at=3 * chunk)
            return up.url, up.offset  # the offset the server answered to the last PATCH

        upload_url, reported = await asyncio.to_thread(first_chunks)
        assert reported == 3 * chunk
        cuts = []
        path = upload_url.split(powered.url, 1)[1]
        while reported < len(data):
            half_sent = None
            if not cuts:  # the first cut lands in a PATCH whose body is half sent: never counted
                half_sent = await send_part_of_body(powered.server.port, path, reported, len(data) - reported,
                                                    data[reported:reported + chunk // 2])
                await asyncio.sleep(0.3)  # let the server write some of them (not a timing assertion)
            cuts.append(await asyncio.to_thread(powered.power_cut))
            if half_sent is not None:
                half_sent[1].close()
            resumed = await asyncio.to_thread(resumed_uploader, upload_url, data)  # asks the server: HEAD
            assert resumed.offset >= reported, f"the server reported {reported} bytes, then forgot them in a cut"

            def more(up=resumed):
                up.upload(stop_at=min(len(data), up.offset + 2 * chunk))
                return up

            resumed = await asyncio.to_thread(more)
            reported = resumed.offset
        photo_id = int(resumed.request.response_headers["x-photoq-photo-id"])
        cuts.append(await asyncio.to_thread(powered.power_cut))  # the finished upload, acknowledged, survives too
        async with aiohttp.ClientSession(base_url=powered.url) as session:
            photos = await wait_for_photos(session, [photo_id], timeout=300)
        assert photos[photo_id]["processing_status"] == "complete"
        print(f"\nresumable upload: {len(cuts)} power cuts (one in a half-sent PATCH), every reported offset kept")
        sha = hashlib.sha256(data).hexdigest()
        assert dict(read_db(powered.data_dir, "SELECT id, sha256 FROM photos")) == {photo_id: sha}
        original = powered.data_dir / "originals" / sha[:2] / sha[2:4] / f"{sha}.png"
        assert original.read_bytes() == data
