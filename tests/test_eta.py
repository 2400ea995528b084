"""eta_seconds: the throughput meter's arithmetic (with a clock the test moves), then the real thing end to end."""

from __future__ import annotations

import os
import signal

import pytest

from photoq.eta import ThroughputMeter, rounded_eta
from photoq.web.keys import DB, QUEUE, WORKERS
from photoq.web.ui import human_eta

from .support import AUTH, SseReader, jpeg, multipart, until, wait_for_photos


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_jobs(meter: ThroughputMeter, clock: Clock, kind: str, count: int, seconds: float, workers: int = 1,
             first_id: int = 1) -> int:
    """`count` jobs of `seconds` each, `workers` at a time, back to back; returns the next free job id."""
    job_id = first_id
    for _ in range(0, count, workers):
        batch = list(range(job_id, job_id + workers))
        for j in batch:
            meter.started(j, kind)
        clock.now += seconds
        for j in batch:
            meter.finished(j, completed=True)
        job_id += workers
    return job_id


# -- the meter -------------------------------------------------------------------------------------------------------


def test_no_estimate_until_three_completions_and_zero_when_nothing_is_left():
    clock = Clock()
    meter = ThroughputMeter(clock)
    assert meter.estimate({}) == 0.0 and meter.estimate({"thumbnail": 0}) == 0.0
    run_jobs(meter, clock, "thumbnail", 2, 1.0)
    assert meter.estimate({"thumbnail": 5}) is None
    run_jobs(meter, clock, "thumbnail", 1, 1.0, first_id=10)
    assert meter.estimate({"thumbnail": 5}) == pytest.approx(5.0)


def test_a_kind_never_measured_leaves_the_estimate_open():
    clock = Clock()
    meter = ThroughputMeter(clock)
    run_jobs(meter, clock, "thumbnail", 4, 0.5)
    assert meter.estimate({"thumbnail": 2, "variant": 2}) is None
    run_jobs(meter, clock, "variant", 1, 3.0, first_id=20)
    assert meter.estimate({"thumbnail": 2, "variant": 2}) == pytest.approx(2 * 0.5 + 2 * 3.0)


def test_kinds_cost_what_they_cost_and_parallel_workers_divide_the_time():
    clock = Clock()
    meter = ThroughputMeter(clock)
    next_id = run_jobs(meter, clock, "thumbnail", 10, 0.2, workers=2)
    run_jobs(meter, clock, "variant", 10, 2.0, workers=2, first_id=next_id)
    assert meter.parallelism() == pytest.approx(2.0)
    assert meter.estimate({"thumbnail": 4, "variant": 6}) == pytest.approx((4 * 0.2 + 6 * 2.0) / 2)


def test_an_idle_hour_does_not_make_the_queue_look_slow():
    clock = Clock()
    meter = ThroughputMeter(clock)
    run_jobs(meter, clock, "thumbnail", 5, 1.0)
    before = meter.estimate({"thumbnail": 10})
    clock.now += 3600  # nothing ran: the queue was empty
    assert meter.estimate({"thumbnail": 10}) == pytest.approx(before) == pytest.approx(10.0)
    run_jobs(meter, clock, "thumbnail", 1, 1.0, first_id=50)
    assert meter.estimate({"thumbnail": 10}) == pytest.approx(10.0)


def test_a_worker_held_back_lowers_the_rate_and_a_running_job_counts_what_it_did():
    clock = Clock()
    meter = ThroughputMeter(clock)
    run_jobs(meter, clock, "variant", 6, 2.0, workers=2)
    assert meter.estimate({"variant": 4}) == pytest.approx(4.0)
    # Then only one job at a time (the other worker waits for memory): the rate drifts toward one worker's.
    run_jobs(meter, clock, "variant", 200, 2.0, workers=1, first_id=100)
    assert meter.parallelism() == pytest.approx(1.0)  # the two-worker stretch has left the 300 s window
    meter.started(500, "variant")
    clock.now += 1.5
    assert meter.estimate({"variant": 1}) == pytest.approx(0.5, rel=0.02)  # 2 s expected, 1.5 s of it done


def test_failed_executions_use_time_but_say_nothing_about_cost():
    clock = Clock()
    meter = ThroughputMeter(clock)
    run_jobs(meter, clock, "thumbnail", 3, 1.0)
    meter.started(9, "thumbnail")
    clock.now += 10.0
    meter.finished(9, completed=False)
    assert meter.cost("thumbnail") == pytest.approx(1.0)
    assert meter.completions == 3
    assert meter.parallelism() == pytest.approx(1.0)  # 13 busy seconds, 13 worker-seconds
    assert meter.estimate({"thumbnail": 13}) == pytest.approx(13.0)


def test_rounding_keeps_small_drift_quiet_and_never_says_zero_with_work_left():
    assert rounded_eta(None) is None
    assert rounded_eta(0) == 0
    assert rounded_eta(0.2) == 5
    assert rounded_eta(41) == rounded_eta(44) == 45
    assert rounded_eta(301) == rounded_eta(329) == 330
    assert rounded_eta(1801) == 1860
    assert rounded_eta(7201) == 7500


# -- end to end ------------------------------------------------------------------------------------------------------


async def make_album(client, name) -> int:
    async with client.post("/api/albums", json={"name": name}, headers=AUTH) as r:
        return (await r.json())["id"]


async def upload(client, album, *files) -> list[int]:
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"]]


async def get(client, path):
    async with client.get(path, headers=AUTH) as r:
        assert r.status == 200, path
        return await r.json()


def photos(prefix: str, count: int, seed: int, size=(640, 480)):
    return [(f"{prefix}{i}.jpg", jpeg(*size, seed=seed + i)) for i in range(count)]


async def warm_up(client, album) -> None:
    """Two photos: four completed jobs, both kinds measured."""
    await wait_for_photos(client, await upload(client, album, *photos("warm", 2, 900)))
    assert client.app[QUEUE].throughput.completions >= 3


async def test_eta_is_null_until_jobs_were_measured_then_a_number_then_zero(start_client):
    client = await start_client(processing={"workers": 1})
    album = await make_album(client, "A")
    assert (await get(client, "/api/stats"))["eta_seconds"] == 0  # nothing to do

    async with client.get(f"/api/events?album_id={album}", headers=AUTH) as response:
        reader = SseReader(response)
        await reader.next()
        # One photo is two jobs: fewer than the three completions an estimate needs, whatever the timing.
        [first] = await upload(client, album, ("one.jpg", jpeg(seed=1)))
        for stats in (await get(client, "/api/stats"), (await get(client, f"/api/albums/{album}"))["stats"]):
            assert stats["eta_seconds"] == (None if stats["pending"] + stats["processing"] else 0)
        while True:
            event = await reader.next()
            if event.name == "stats":
                if event.data["complete"] == 1:
                    assert event.data["eta_seconds"] == 0
                    break
                assert event.data["eta_seconds"] is None, event.data

        # Now both kinds are measured: the next photos get a number while they are processed.
        ids = await upload(client, album, *photos("b", 4, 10, size=(3000, 2000)))
        seen = []
        while True:
            event = await reader.next()
            if event.name != "stats":
                continue
            seen.append(event.data)
            if event.data["complete"] == 5:
                break
    during = [s["eta_seconds"] for s in seen if s["pending"] + s["processing"] > 0]
    assert any(isinstance(eta, int) and eta > 0 for eta in during), seen
    assert seen[-1]["eta_seconds"] == 0
    await wait_for_photos(client, [first, *ids])


async def test_an_albums_eta_counts_the_jobs_ahead_of_its_last_one(start_client):
    client = await start_client(processing={"workers": 2})
    queue, db = client.app[QUEUE], client.app[DB]
    warm = await make_album(client, "warm")
    await warm_up(client, warm)

    await client.post("/api/admin/queue/pause", headers=AUTH)
    first, last = await make_album(client, "first"), await make_album(client, "last")
    await upload(client, first, *photos("f", 4, 100, size=(3000, 2000)))
    await upload(client, last, ("l.jpg", jpeg(seed=200)))
    # Claim order is thumbnails first, then by time: "last"'s variant is the very last job, so every job is ahead
    # of it; "first"'s last job (a variant) has all thumbnails ahead of it, its own variants, and not "last"'s.
    assert await db.jobs_until_album_done(last) == {"thumbnail": 5, "variant": 5}
    assert await db.jobs_until_album_done(first) == {"thumbnail": 5, "variant": 4}
    assert await db.unfinished_jobs_by_kind() == {"thumbnail": 5, "variant": 5}
    assert (await get(client, f"/api/stats?album_id={last}"))["eta_seconds"] is None  # paused: cannot say

    # Running, with the image processes frozen so that nothing finishes while the estimates are compared.
    pool = client.app[WORKERS]
    await client.post("/api/admin/queue/resume", headers=AUTH)
    await until(lambda: pool.busy == 2 and len(pool.child_pids()) == 2)
    for pid in pool.child_pids():
        os.kill(pid, signal.SIGSTOP)
    try:
        own = queue.throughput.estimate({"thumbnail": 1, "variant": 1})
        album_eta = (await get(client, f"/api/stats?album_id={last}"))["eta_seconds"]
        everything = (await get(client, "/api/stats"))["eta_seconds"]
        assert isinstance(album_eta, int) and album_eta > 2 * own
        assert abs(album_eta - everything) <= max(5, everything * 0.15)  # the same jobs, a moment apart
        detail = await get(client, f"/api/albums/{last}")
        assert isinstance(detail["stats"]["eta_seconds"], int)
    finally:
        for pid in pool.child_pids():
            os.kill(pid, signal.SIGCONT)


async def test_pause_makes_the_eta_null_over_sse_and_resume_brings_it_back(start_client):
    client = await start_client(processing={"workers": 1})
    album = await make_album(client, "A")
    await warm_up(client, album)
    pool = client.app[WORKERS]
    async with client.get("/api/events", headers=AUTH) as response:
        reader = SseReader(response)
        assert (await reader.next()).data["eta_seconds"] == 0
        await client.post("/api/admin/queue/pause", headers=AUTH)
        await upload(client, album, *photos("p", 3, 300))
        event = await next_stats(reader, lambda s: s["pending"] == 3)
        assert event["eta_seconds"] is None
        assert (await get(client, "/api/stats"))["eta_seconds"] is None
        assert (await get(client, f"/api/albums/{album}"))["stats"]["eta_seconds"] is None

        # Resumed with the image process frozen: the first job cannot finish, so the number it shows is the
        # estimate for everything that is queued.
        await until(lambda: len(pool.child_pids()) == 1)
        [pid] = pool.child_pids()
        os.kill(pid, signal.SIGSTOP)
        try:
            await client.post("/api/admin/queue/resume", headers=AUTH)
            event = await next_stats(reader, lambda s: s["eta_seconds"] is not None)
            assert event["eta_seconds"] > 0 and event["pending"] + event["processing"] == 3
        finally:
            os.kill(pid, signal.SIGCONT)
        await next_stats(reader, lambda s: s["complete"] == 5 and s["eta_seconds"] == 0)


async def next_stats(reader, predicate):
    while True:
        event = await reader.next()
        if event.name == "stats" and predicate(event.data):
            return event.data


def test_the_pages_say_it_in_rounded_words():
    assert human_eta(None) == human_eta(0) == ""
    assert human_eta(45) == "less than a minute left"
    assert human_eta(150) == "about 3 min left"
    assert human_eta(5400) == "about 1 h 30 min left"
