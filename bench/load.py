"""Load run: 20 concurrent uploaders x 50 photos against a live `photoq serve` whose workers are busy.

Each uploader is its own client: it connects from its own loopback address (127.0.0.N), so the per-client rate
limiter sees 20 clients, as it would in real life, with the default settings. Every upload must be accepted
(0 errors); the script prints the p50/p95/p99 upload latency and exits 1 on any error.

    python bench/load.py [--uploaders 20] [--photos 50] [--workers 2] [--busy 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import AUTH, ServerProcess, photo_like

from scenes import unique_copy
from service import percentile


def base_jpeg(width: int, height: int, seed: int) -> bytes:
    buffer = io.BytesIO()
    photo_like(width, height, seed).save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


async def create_album(session: aiohttp.ClientSession, name: str) -> int:
    async with session.post("/api/albums", json={"name": name}, headers=AUTH) as r:
        r.raise_for_status()
        return (await r.json())["id"]


async def upload(session: aiohttp.ClientSession, album: int, filename: str, data: bytes) -> tuple[int, str]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="image/jpeg")
    async with session.post(f"/api/albums/{album}/photos", data=form, headers=AUTH) as r:
        body = await r.read()
        return r.status, body[:200].decode(errors="replace")


async def queue_state(session: aiohttp.ClientSession) -> dict:
    async with session.get("/api/admin/queue", headers=AUTH) as r:
        queue = await r.json()
    return {"pending": queue["queue_size"], "processing": queue["processing_count"], "failed": queue["failed_count"]}


async def uploader(url: str, number: int, photos: list[tuple[str, bytes]], latencies: list[float],
                   errors: list[str], start: asyncio.Event) -> None:
    connector = aiohttp.TCPConnector(local_addr=(f"127.0.0.{number + 2}", 0), limit=1)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as session:
        album = await create_album(session, f"Uploader {number}")
        await start.wait()
        for filename, data in photos:
            began = time.perf_counter()
            try:
                status, body = await upload(session, album, filename, data)
            except (TimeoutError, aiohttp.ClientError) as exc:
                errors.append(f"uploader {number} {filename}: {type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - began)
            if status != 202:
                errors.append(f"uploader {number} {filename}: HTTP {status} {body}")


async def main(args: argparse.Namespace) -> int:
    print(f"preparing {args.uploaders} x {args.photos} distinct photos ...", flush=True)
    bases = [base_jpeg(1200 + 40 * (i % 10), 900 + 30 * (i % 7), seed=i) for i in range(args.uploaders)]
    work = [[(f"u{u:02d}-{n:03d}.jpg", unique_copy(bases[u], u * args.photos + n)) for n in range(args.photos)]
            for u in range(args.uploaders)]
    size = sum(len(d) for batch in work for _, d in batch)

    with tempfile.TemporaryDirectory(prefix="photoq-load-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        config = Path(tmp) / "config.toml"
        config.write_text("[processing]\nshutdown_grace_seconds = 2\n")
        server = ServerProcess(data_dir, workers=args.workers, config=config)
        server.start()
        try:
            async with aiohttp.ClientSession(base_url=server.url) as session:
                # Keep the workers busy from the first upload on: big photos whose display variants take a while.
                busy_album = await create_album(session, "Busy")
                for i in range(args.busy):
                    status, body = await upload(session, busy_album, f"busy-{i}.jpg",
                                                base_jpeg(5000, 3750, seed=1000 + i))
                    assert status == 202, body
                before = await queue_state(session)

                latencies: list[float] = []
                errors: list[str] = []
                start = asyncio.Event()
                tasks = [asyncio.create_task(uploader(server.url, u, work[u], latencies, errors, start))
                         for u in range(args.uploaders)]
                await asyncio.sleep(0.5)  # every uploader has its album and connection
                began = time.perf_counter()
                start.set()
                await asyncio.gather(*tasks)
                elapsed = time.perf_counter() - began
                after = await queue_state(session)
        finally:
            server.terminate(timeout=60)

    latencies.sort()
    total = args.uploaders * args.photos
    print(f"\nphotoq load run: {args.uploaders} uploaders x {args.photos} photos = {total} uploads "
          f"({size / 1e6:.0f} MB), {args.workers} image workers")
    print(f"queue at start: {before}   at end: {after}  (workers busy throughout: "
          f"{'yes' if before['processing'] and after['pending'] + after['processing'] else 'no'})")
    print(f"{len(latencies)} answered in {elapsed:.1f}s: {len(latencies) / elapsed:.1f} uploads/s, "
          f"{size / elapsed / 1e6:.1f} MB/s")
    print(f"upload latency  p50 {percentile(latencies, 50) * 1000:.0f} ms   "
          f"p95 {percentile(latencies, 95) * 1000:.0f} ms   p99 {percentile(latencies, 99) * 1000:.0f} ms   "
          f"max {latencies[-1] * 1000 if latencies else float('nan'):.0f} ms   "
          f"mean {statistics.fmean(latencies) * 1000 if latencies else float('nan'):.0f} ms")
    print(f"errors: {len(errors)}")
    for error in errors[:20]:
        print("  ", error)
    return 1 if errors or len(latencies) != total else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploaders", type=int, default=20)
    parser.add_argument("--photos", type=int, default=50, help="photos per uploader")
    parser.add_argument("--workers", type=int, default=2, help="image workers of the server")
    parser.add_argument("--busy", type=int, default=8, help="big photos queued before the run starts")
    sys.exit(asyncio.run(main(parser.parse_args())))
