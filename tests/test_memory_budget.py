"""[processing] memory_budget_mb: big photos take turns, small ones still run side by side, a photo bigger than the
whole budget runs alone, and a job waiting for memory is still in the queue (no attempt used) when photoq stops."""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import zlib

import pytest

from photoq import imaging
from photoq.config import ConfigError, Settings, load_settings
from photoq.memory_budget import MIB, MemoryBudget, default_budget_mb, physical_memory_bytes
from photoq.models import Status
from photoq.web.keys import DB, QUEUE, WORKERS
from photoq.workers import output_specs

from .support import AUTH, heic, image_bytes, jpeg, multipart, photo_like, until, wait_for_photos

BIG = (3000, 2000)


def variant_estimate(width: int, height: int) -> int:
    settings = Settings()
    return imaging.estimated_peak_bytes(width, height, "jpeg", output_specs(settings.outputs_for("variant"), settings))


def budget_for_one_big_variant() -> int:
    """MiB in which one big photo's variant job fits, but not two."""
    return int(variant_estimate(*BIG) * 1.5 // MIB)


async def make_album(client) -> int:
    async with client.post("/api/albums", json={"name": "M"}, headers=AUTH) as r:
        return (await r.json())["id"]


async def upload(client, album, *files) -> list[int]:
    async with client.post(f"/api/albums/{album}/photos", data=multipart(*files), headers=AUTH) as r:
        assert r.status == 202, await r.text()
        return [p["id"] for p in (await r.json())["photos"]]


async def attempts(client, photo_ids, kind=None) -> list[dict]:
    found = []
    for photo_id in photo_ids:
        async with client.get(f"/api/photos/{photo_id}/history", headers=AUTH) as r:
            found += [a for a in (await r.json())["attempts"] if kind in (None, a["kind"])]
    return found


def overlap(a: dict, b: dict) -> bool:
    return a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]


# -- the estimate and the budget's rule ----------------------------------------------------------------------------


def test_the_estimate_follows_how_render_decodes():
    settings = Settings()
    thumbs = output_specs(settings.outputs_for("thumbnail"), settings)
    variants = output_specs(settings.outputs_for("variant"), settings)
    # libjpeg drafts a big JPEG for small outputs; a PNG is decoded whole and may be converted once.
    assert imaging.estimated_peak_bytes(6000, 4000, "jpeg", thumbs) < imaging.estimated_peak_bytes(
        6000, 4000, "jpeg", variants) < imaging.estimated_peak_bytes(6000, 4000, "png", variants)
    assert imaging.estimated_peak_bytes(6000, 4000, "png", variants) >= 2 * 6000 * 4000 * 4
    assert imaging.estimated_peak_bytes(640, 480, "jpeg", variants) < imaging.estimated_peak_bytes(
        3000, 2000, "jpeg", variants)
    assert imaging.estimated_peak_bytes(640, 480, "jpeg", []) == 0


# Run in a fresh interpreter, as an image process: render one source to a job's outputs and print how far the
# process's peak resident memory (VmHWM) rose above where it stood before the render.
MEASURE_ONE_RENDER = """
import json, re, sys, tempfile
from pathlib import Path
from photoq import imaging
from photoq.config import Settings
from photoq.workers import output_specs

def kib(name):
    return int(re.search(name + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024

kind, path = sys.argv[1], sys.argv[2]
settings = Settings()
imaging.init_worker(settings.upload.max_pixels, 0)
before = kib("VmRSS")
with tempfile.TemporaryDirectory() as dest:
    imaging.render(path, output_specs(settings.outputs_for(kind), settings), dest, fsync=False)
print(kib("VmHWM") - before)
"""


def png_16_bit_rgb(width: int, height: int, seed: int) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow writes 8-bit RGB only): the photo's bytes doubled, chunk by chunk."""
    import numpy as np

    pixels = (np.asarray(photo_like(width, height, seed), dtype=">u2") * 257).reshape(height, width * 6 // 2)
    rows = np.hstack([np.zeros((height, 1), dtype=np.uint8), pixels.view(np.uint8).reshape(height, width * 6)])
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)) + \
        png_chunk(b"IEND", b"")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_16_bit(width: int, height: int, seed: int, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    photo_like(width, height, seed).convert("L").point(lambda v: v * 257, "I").convert("I;16").save(
        buffer, fmt, **params)
    return buffer.getvalue()


# Every source format, and the decodes that hold more than their picture: a progressive JPEG (libjpeg keeps all of
# its coefficients), 16-bit PNGs and a compressed 16-bit TIFF written as one strip (libtiff decodes a strip whole).
SOURCES = {
    "jpeg": ("jpeg", lambda w, h: image_bytes("jpeg", w, h, seed=3)),
    "progressive jpeg 4:4:4": ("jpeg", lambda w, h: image_bytes("jpeg", w, h, seed=3, progressive=True,
                                                               subsampling=0)),
    "png": ("png", lambda w, h: image_bytes("png", w, h, seed=3)),
    "16-bit grey png": ("png", lambda w, h: grey_16_bit(w, h, 3, "PNG")),
    "16-bit rgb png": ("png", lambda w, h: png_16_bit_rgb(w, h, 3)),
    "tiff": ("tiff", lambda w, h: image_bytes("tiff", w, h, seed=3)),
    "16-bit tiff, one deflate strip": ("tiff", lambda w, h: grey_16_bit(
        w, h, 3, "TIFF", compression="tiff_adobe_deflate", strip_size=2**31 - 1)),
    "webp": ("webp", lambda w, h: image_bytes("webp", w, h, seed=3)),
    "heic": ("heic", lambda w, h: heic(width=w, height=h, seed=3)),
    "avif": ("avif", lambda w, h: image_bytes("avif", w, h, seed=3)),
}


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc/self/status")
@pytest.mark.parametrize("source_kind", list(SOURCES))
def test_the_estimate_is_not_below_what_a_real_image_process_uses(source_kind, tmp_path):
    """The budget is only as good as the estimate: a real render's memory peak must not exceed it (a WebP decode
    once took twice what was estimated, and two budgeted 50 MP WebP jobs were killed by the OOM killer; a 12000 x
    12000 progressive JPEG was estimated at 23 MiB and peaked at 865 MiB)."""
    width, height = 2400, 1600
    fmt, make = SOURCES[source_kind]
    source = tmp_path / f"source.{fmt}"
    source.write_bytes(make(width, height))
    facts = imaging.decode_facts(str(source), fmt)
    if source_kind.startswith("progressive"):
        assert facts.decoder_bytes == width * height * 3 * 2  # three full-size components of 2-byte coefficients
    settings = Settings()
    for kind in ("thumbnail", "variant"):
        measured = int(subprocess.run([sys.executable, "-c", MEASURE_ONE_RENDER, kind, str(source)],
                                      check=True, capture_output=True, text=True).stdout)
        specs = output_specs(settings.outputs_for(kind), settings)
        estimate = imaging.estimated_peak_bytes(width, height, fmt, specs, facts)
        assert measured <= estimate, (kind, measured // MIB, estimate // MIB)
        if source_kind.startswith("progressive"):  # the coefficients are really held, even for the thumbnails
            assert measured >= facts.decoder_bytes, (kind, measured // MIB, facts.decoder_bytes // MIB)


def test_a_job_bigger_than_the_budget_fits_only_when_nothing_runs():
    budget = MemoryBudget(100)
    assert budget.fits(500)
    budget.reserve(60)
    assert budget.fits(40) and not budget.fits(41) and not budget.fits(500)
    budget.release(60)
    assert budget.fits(500) and budget.reserved == 0
    assert MemoryBudget(None).fits(10**15)


def test_the_default_budget_is_half_the_memory():
    total = physical_memory_bytes()
    assert total and default_budget_mb() == total // 2 // MIB


# -- with real workers ---------------------------------------------------------------------------------------------


async def test_big_photos_take_turns_while_small_ones_run_side_by_side(start_client):
    budget = budget_for_one_big_variant()
    client = await start_client(processing={"workers": 2, "memory_budget_mb": budget})
    album = await make_album(client)

    big = await upload(client, album, *[(f"big{i}.jpg", jpeg(*BIG, seed=500 + i)) for i in range(2)])
    await wait_for_photos(client, big)
    first, second = await attempts(client, big, "variant")
    assert first["outcome"] == second["outcome"] == "complete"
    assert not overlap(first, second), (first, second)
    assert client.app[WORKERS].memory.waits >= 1

    small = await upload(client, album, *[(f"small{i}.jpg", jpeg(seed=600 + i)) for i in range(6)])
    await wait_for_photos(client, small)
    runs = await attempts(client, small)
    assert any(overlap(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]), runs
    assert client.app[WORKERS].memory.reserved == 0

    async with client.get("/metrics", headers=AUTH) as r:
        text = await r.text()
    assert metric(text, "photoq_memory_budget_bytes") == budget * MIB
    assert metric(text, "photoq_memory_reserved_bytes") == 0
    assert metric(text, "photoq_memory_waits_total") >= 1


def metric(text: str, name: str) -> float:
    return float(next(line for line in text.splitlines() if line.startswith(name + " ")).split()[1])


async def test_a_photo_bigger_than_the_whole_budget_still_runs_alone(start_client):
    client = await start_client(processing={"workers": 2, "memory_budget_mb": 1})
    album = await make_album(client)
    ids = await upload(client, album, *[(f"big{i}.jpg", jpeg(*BIG, seed=700 + i)) for i in range(2)])
    final = await wait_for_photos(client, ids)
    assert all(p["processing_status"] == "complete" for p in final.values())
    runs = await attempts(client, ids)
    assert len(runs) == 4 and all(r["outcome"] == "complete" for r in runs)
    assert not any(overlap(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]), runs


async def test_without_a_budget_big_photos_do_run_together(start_client):
    """The counterpart of the tests above: what the budget prevents does happen without it."""
    client = await start_client(processing={"workers": 2, "memory_budget_mb": 0})
    album = await make_album(client)
    for attempt in range(3):  # two workers that both got work: overlap is what they do, unless one was very late
        ids = await upload(client, album, *[(f"big{attempt}-{i}.jpg", jpeg(*BIG, seed=800 + 10 * attempt + i))
                                            for i in range(2)])
        await wait_for_photos(client, ids)
        first, second = await attempts(client, ids, "variant")
        if overlap(first, second):
            break
    else:
        raise AssertionError("two workers never ran two variant jobs at once")
    assert client.app[WORKERS].memory.waits == 0


async def test_stopping_while_a_job_waits_for_memory_leaves_it_queued_with_no_attempt_used(start_client):
    client = await start_client(processing={"workers": 2, "memory_budget_mb": 1})
    pool, queue, db = client.app[WORKERS], client.app[QUEUE], client.app[DB]
    album = await make_album(client)
    await client.post("/api/admin/queue/pause", headers=AUTH)
    ids = await upload(client, album, *[(f"big{i}.jpg", jpeg(*BIG, seed=900 + i)) for i in range(2)])
    await until(lambda: len(pool.child_pids()) == 2)
    for pid in pool.child_pids():  # whatever starts now cannot finish
        os.kill(pid, signal.SIGSTOP)
    try:
        await client.post("/api/admin/queue/resume", headers=AUTH)
        await until(lambda: pool.busy == 1 and pool.memory.waiting == 1)
        [running_id] = list(pool._running)
        waiting = await queue.next_runnable()
        assert waiting is not None and waiting.id != running_id
        [waiting_job] = [j for j in await db.list_jobs(Status.PENDING, 100) if j.id == waiting.id]
        assert waiting_job.attempts == 0  # not claimed: the page shows it as queued, not as being processed

        await pool.stop(grace=0.2)
    finally:
        for pid in pool.child_pids():
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    jobs = await db.list_jobs(Status.PENDING, 100)
    assert len(jobs) == 4 and all(j.attempts == 0 for j in jobs)  # the interrupted one is refunded too
    history = await attempts(client, ids)
    assert [(a["job_id"], a["outcome"]) for a in history] == [(running_id, "interrupted")]
    assert pool.memory.reserved == 0 and pool.memory.running == 0


def test_the_setting_is_read_checked_and_0_means_no_limit(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[processing]\nmemory_budget_mb = 0\n")
    assert load_settings(config, environ={}).processing.memory_budget_mb == 0
    config.write_text("[processing]\nmemory_budget_mb = 1536\n")
    assert load_settings(config, environ={}).processing.memory_budget_mb == 1536
    for bad in ("-1", '"lots"', "1.5"):
        config.write_text(f"[processing]\nmemory_budget_mb = {bad}\n")
        with pytest.raises(ConfigError, match="processing.memory_budget_mb"):
            load_settings(config, environ={})
