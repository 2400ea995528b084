"""Measurements through a live `photoq serve` subprocess: end to end, ingest, SSE and memory."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, wait
from datetime import datetime
from pathlib import Path

import aiohttp
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import AUTH, ServerProcess, SseReader, free_port, multipart  # noqa: E402

import scenes  # noqa: E402

BENCH_CONFIG = "[ratelimit]\nenabled = false\n"  # the bench is one client sending hundreds of requests


# -- helpers ------------------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50": percentile(ms, 50), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "max": max(ms)}


def start_server(root: Path, name: str, workers: int) -> ServerProcess:
    data = root / name
    data.mkdir(parents=True)
    config = root / f"{name}.toml"
    config.write_text(BENCH_CONFIG)
    server = ServerProcess(data, workers=workers, config=config)
    server.start(timeout=60)
    return server


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def tree_rss(pid: int) -> tuple[int, int, list[int]]:
    """(main process RSS, RSS summed over the process and all its descendants, each child's RSS), bytes."""
    try:
        main = psutil.Process(pid)
        children = main.children(recursive=True)
        main_rss = main.memory_info().rss
    except psutil.NoSuchProcess:
        return 0, 0, []
    rss = []
    for child in children:
        try:
            rss.append(child.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return main_rss, main_rss + sum(rss), rss


def tree_pss(pid: int) -> int:
    """Proportional set size summed over the tree: shared pages (the forkserver's preloaded Pillow) counted once."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            pass
    return total


class RssSampler:
    """Samples the server's process tree every `interval` seconds in the background."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid = pid
        self.interval = interval
        self.peak_tree = self.peak_main = self.peak_child = 0
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            main, tree, children = await asyncio.to_thread(tree_rss, self.pid)
            self.peak_main = max(self.peak_main, main)
            self.peak_tree = max(self.peak_tree, tree)
            self.peak_child = max([self.peak_child, *children])
            await asyncio.sleep(self.interval)

    def __enter__(self):
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc):
        assert self._task is not None
        self._task.cancel()


async def create_album(session: aiohttp.ClientSession, url: str) -> int:
    async with session.post(f"{url}/api/albums", json={"name": "bench"}, headers=AUTH) as r:
        assert r.status == 201, (r.status, await r.text())
        return (await r.json())["id"]


async def upload(session: aiohttp.ClientSession, url: str, album_id: int, name: str, data: bytes) -> int:
    async with session.post(f"{url}/api/albums/{album_id}/photos", data=multipart((name, data)), headers=AUTH) as r:
        body = await r.json()
        assert r.status == 202, (r.status, body)
        return body["photos"][0]["id"]


async def queue_action(session: aiohttp.ClientSession, url: str, action: str) -> None:
    async with session.post(f"{url}/api/admin/queue/{action}", headers=AUTH) as r:
        assert r.status < 300, (r.status, await r.text())


class CompletionWatcher:
    """Follows /api/events and records when each photo reaches `complete` (or `failed`)."""

    def __init__(self, session: aiohttp.ClientSession, url: str):
        self.session, self.url = session, url
        self.done: dict[int, str] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None

    async def __aenter__(self):
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._follow(ready))
        await asyncio.wait_for(ready.wait(), 30)
        return self

    async def __aexit__(self, *exc):
        assert self._task is not None
        self._task.cancel()

    async def _follow(self, ready: asyncio.Event) -> None:
        async with self.session.get(f"{self.url}/api/events", headers=AUTH,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
            reader = SseReader(r)
            await reader.next()
            ready.set()
            while True:
                event = await reader.next(timeout=3600)
                if event.name == "photo" and event.data["processing_status"] in ("complete", "failed"):
                    self.done[event.data["id"]] = event.data["processing_status"]
                    self._changed.set()

    async def wait_for(self, ids: set[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.done.keys():
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), max(0.1, deadline - time.monotonic()))
        failed = [i for i in ids if self.done[i] != "complete"]
        assert not failed, f"photos failed: {failed}"


async def upload_all(session, url, album_id, photos: list[bytes] | list[Path], concurrency: int = 2) -> list[int]:
    """Upload `photos` (JPEG bytes, or files read only when their turn comes, as a client streams them), `concurrency`
    at a time; their ids, in order."""
    ids: list[int] = [0] * len(photos)
    position = iter(range(len(photos)))

    async def uploader() -> None:
        for i in position:
            photo = photos[i]
            if isinstance(photo, Path):
                ids[i] = await upload(session, url, album_id, photo.name, photo.read_bytes())
            else:
                ids[i] = await upload(session, url, album_id, f"photo-{i}.jpg", photo)

    await asyncio.gather(*(uploader() for _ in range(concurrency)))
    return ids


def client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600),
                                 connector=aiohttp.TCPConnector(limit=200))


# -- end to end ---------------------------------------------------------------------------------------------------


async def service_throughput(root: Path, workers: int, photos: list[bytes]) -> dict:
    server = start_server(root, f"e2e-{workers}", workers)
    try:
        async with client_session() as session:
            album_id = await create_album(session, server.url)
            async with CompletionWatcher(session, server.url) as watcher:
                start = time.perf_counter()
                cpu_before = psutil.cpu_times()
                ids = await upload_all(session, server.url, album_id, photos, concurrency=len(photos))
                uploaded = time.perf_counter()
                await watcher.wait_for(set(ids), timeout=600)
                elapsed = time.perf_counter() - start
                cpu_after = psutil.cpu_times()
        busy = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        return {"photos": len(photos), "seconds": elapsed, "upload_seconds": uploaded - start,
                "photos_per_min": len(photos) / elapsed * 60, "machine_cpu_seconds": busy}
    finally:
        server.stop()


def image_niceness() -> int:
    from photoq import workers

    return getattr(workers, "IMAGE_PROCESS_NICENESS", 0)


def _warm(_: int) -> int:
    time.sleep(0.3)
    return os.getpid()


def bare_pool_throughput(root: Path, workers: int, sources: list[Path]) -> dict:
    """The same image work as the service (a thumbnail render and a variant render per photo, fsync as configured),
    submitted straight to a warmed-up ProcessPoolExecutor of the same size."""
    from photoq import imaging
    from photoq.config import Settings
    from photoq.workers import output_specs

    settings = Settings()
    specs = {kind: output_specs(settings.outputs_for(kind), settings) for kind in ("thumbnail", "variant")}
    out = root / f"bare-{workers}"
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=imaging.init_worker,
                             initargs=(settings.upload.max_pixels, image_niceness())) as pool:
        list(pool.map(_warm, range(workers)))
        start = time.perf_counter()
        futures = [pool.submit(imaging.render, str(src), specs[kind], str(out / kind / str(i)),
                               settings.storage.fsync)
                   for kind in ("thumbnail", "variant") for i, src in enumerate(sources)]
        wait(futures)
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - start
    return {"photos": len(sources), "seconds": elapsed, "photos_per_min": len(sources) / elapsed * 60}


def _naive_photo(source: str, dest: str) -> None:
    """The issue's naive Pillow pipeline for one photo: open, exif_transpose, then per output copy() +
    thumbnail(LANCZOS) + WebP q80 with the encoder's default method."""
    from PIL import Image, ImageOps

    from photoq.config import Settings

    os.makedirs(dest, exist_ok=True)
    with Image.open(source) as opened:
        im = ImageOps.exif_transpose(opened)
    for output in Settings().outputs:
        copy = im.copy()
        copy.thumbnail((output.width, output.height), Image.Resampling.LANCZOS)
        copy.save(os.path.join(dest, output.name + ".webp"), "WEBP", quality=80)


def naive_pool_throughput(root: Path, workers: int, sources: list[Path]) -> dict:
    out = root / f"naive-{workers}"
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        list(pool.map(_warm, range(workers)))
        start = time.perf_counter()
        futures = [pool.submit(_naive_photo, str(src), str(out / str(i))) for i, src in enumerate(sources)]
        wait(futures)
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - start
    return {"photos": len(sources), "seconds": elapsed, "photos_per_min": len(sources) / elapsed * 60}


def end_to_end(root: Path, base_jpeg: bytes, counts: dict[int, int]) -> dict:
    results = {}
    for workers, n in counts.items():
        photos = [scenes.unique_copy(base_jpeg, 1000 * workers + i) for i in range(n)]
        sources = []
        for i, data in enumerate(photos):
            path = root / "e2e-sources" / f"{workers}-{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            sources.append(path)
        bare = bare_pool_throughput(root, workers, sources)
        naive = naive_pool_throughput(root, workers, sources)
        service = asyncio.run(service_throughput(root, workers, photos))
        results[workers] = {"service": service, "bare": bare, "naive": naive,
                            "ratio": service["photos_per_min"] / bare["photos_per_min"]}
        print(f"  e2e workers={workers}: service {service['photos_per_min']:.1f} photos/min, "
              f"bare pool {bare['photos_per_min']:.1f} ({results[workers]['ratio']:.0%}), "
              f"naive Pillow pool {naive['photos_per_min']:.1f}", flush=True)
    return results


# -- ingest -------------------------------------------------------------------------------------------------------


async def time_uploads(session, url: str, album_id: int | None, data: bytes, n: int, tag: int) -> list[float]:
    times = []
    for i in range(n):
        body = scenes.unique_copy(data, tag + i)
        start = time.perf_counter()
        if album_id is None:  # the bare handler
            async with session.post(f"{url}/upload", data=multipart(("p.jpg", body))) as r:
                assert r.status == 202
                await r.read()
        else:
            await upload(session, url, album_id, f"p{tag + i}.jpg", body)
        times.append(time.perf_counter() - start)
    return times


def _burn(source: str, dest: str, stop) -> None:
    from photoq import imaging
    from photoq.config import Settings
    from photoq.workers import output_specs

    settings = Settings()
    specs = output_specs(settings.outputs, settings)
    imaging.init_worker(settings.upload.max_pixels, image_niceness())  # as photoq's image processes
    while not stop.is_set():
        imaging.render(source, specs, dest, fsync=False)


class CpuBurners:
    """`n` processes rendering photos in a loop: the load photoq's workers put on the machine."""

    def __init__(self, n: int, source: Path, dest: Path):
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.procs = [ctx.Process(target=_burn, args=(str(source), str(dest / str(i)), self.stop)) for i in range(n)]

    def __enter__(self):
        for p in self.procs:
            p.start()
        time.sleep(1.5)  # imports and the first decode
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for p in self.procs:
            p.join(30)


def machine_busy_fraction(seconds: float) -> float:
    before = psutil.cpu_times()
    time.sleep(seconds)
    after = psutil.cpu_times()
    busy = (after.user + after.system) - (before.user + before.system)
    total = busy + (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    return busy / total if total else 0.0


async def _ingest_photoq(root: Path, data: bytes, n: int, warmup: int) -> dict:
    server = start_server(root, "ingest", workers=2)
    try:
        async with client_session() as session:
            album_id = await create_album(session, server.url)
            await queue_action(session, server.url, "pause")  # idle: uploads only, nothing processed
            await time_uploads(session, server.url, album_id, data, warmup, 10_000)
            idle = await time_uploads(session, server.url, album_id, data, n, 20_000)
            await queue_action(session, server.url, "resume")  # the idle uploads are now the workers' backlog
            await asyncio.sleep(2)
            busy_fraction = await asyncio.to_thread(machine_busy_fraction, 1.0)
            busy = await time_uploads(session, server.url, album_id, data, n, 30_000)
            busy_fraction_after = await asyncio.to_thread(machine_busy_fraction, 1.0)
    finally:
        server.stop()
    return {"idle": summary_ms(idle), "busy": summary_ms(busy),
            "cpu_busy": min(busy_fraction, busy_fraction_after), "cpu_busy_before_after": [busy_fraction, busy_fraction_after]}


async def _ingest_bare(url: str, data: bytes, n: int, warmup: int, tag: int) -> list[float]:
    async with client_session() as session:
        await time_uploads(session, url, None, data, warmup, tag)
        return await time_uploads(session, url, None, data, n, tag + warmup)


def ingest(root: Path, data: bytes, burn_source: Path, n: int, warmup: int = 5) -> dict:
    port = free_port()
    bare_dir = root / "bare-uploads"
    bare_dir.mkdir()
    bare = subprocess.Popen([sys.executable, str(Path(__file__).parent / "bare_upload.py"), str(port), str(bare_dir)])
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_port(port)
        bare_idle = asyncio.run(_ingest_bare(url, data, n, warmup, 40_000))
        with CpuBurners(2, burn_source, root / "burn"):
            cpu = machine_busy_fraction(1.0)
            bare_busy = asyncio.run(_ingest_bare(url, data, n, warmup, 50_000))
    finally:
        bare.terminate()
        bare.wait(10)
    photoq = asyncio.run(_ingest_photoq(root, data, n, warmup))
    return {"bytes": len(data), "photoq": photoq,
            "bare": {"idle": summary_ms(bare_idle), "busy": summary_ms(bare_busy), "cpu_busy": cpu}}


# -- SSE ----------------------------------------------------------------------------------------------------------


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _sse_client(session, url: str, ready: asyncio.Event, counter: list[int], arrivals: list,
                      stop: asyncio.Event) -> None:
    async with session.get(f"{url}/api/events", headers=AUTH,
                           timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as r:
        reader = SseReader(r)
        await reader.next()
        counter[0] += 1
        if counter[0] == counter[1]:
            ready.set()
        seen: set[tuple[int, str, str]] = set()
        while not stop.is_set():
            try:
                event = await reader.next(timeout=0.5)
            except TimeoutError:
                continue
            now = time.time()
            if event.name != "photo":
                continue
            for kind in ("thumbnail", "variant"):
                key = (event.data["id"], kind, event.data[f"{kind}_status"])
                if key[2] in ("processing", "complete") and key not in seen:
                    seen.add(key)
                    arrivals.append((key, now))


async def _sse(root: Path, photos: list[bytes], clients: int) -> dict:
    server = start_server(root, "sse", workers=2)
    try:
        async with client_session() as session:
            album_id = await create_album(session, server.url)
            ready, stop = asyncio.Event(), asyncio.Event()
            counter = [0, clients]
            arrivals: list = []
            tasks = [asyncio.create_task(_sse_client(session, server.url, ready, counter, arrivals, stop))
                     for _ in range(clients)]
            await asyncio.wait_for(ready.wait(), 60)
            async with CompletionWatcher(session, server.url) as watcher:
                ids = []
                for i, data in enumerate(photos):
                    ids.append(await upload(session, server.url, album_id, f"s{i}.jpg", data))
                    await asyncio.sleep(0.05)
                await watcher.wait_for(set(ids), timeout=300)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            changed_at = {}
            for photo_id in ids:
                async with session.get(f"{server.url}/api/photos/{photo_id}/history", headers=AUTH) as r:
                    for attempt in (await r.json())["attempts"]:
                        changed_at[(photo_id, attempt["kind"], "processing")] = parse_iso(attempt["started_at"])
                        if attempt["outcome"] == "complete":
                            changed_at[(photo_id, attempt["kind"], "complete")] = parse_iso(attempt["finished_at"])
    finally:
        server.stop()
    delays = [arrived - changed_at[key] for key, arrived in arrivals if key in changed_at]
    expected = clients * len(changed_at)
    return {"clients": clients, "changes": len(changed_at), "deliveries": len(delays), "expected": expected,
            **summary_ms(delays)}


def sse(root: Path, photos: list[bytes], clients: int = 100) -> dict:
    return asyncio.run(_sse(root, photos, clients))


# -- memory -------------------------------------------------------------------------------------------------------


async def _memory(root: Path, photos: list[bytes]) -> dict:
    server = start_server(root, "memory", workers=2)
    try:
        await asyncio.sleep(3)
        idle_main, idle_tree, idle_children = tree_rss(server.process.pid)
        idle_pss = tree_pss(server.process.pid)
        async with client_session() as session:
            album_id = await create_album(session, server.url)
            async with CompletionWatcher(session, server.url) as watcher:
                with RssSampler(server.process.pid) as sampler:
                    start = time.perf_counter()
                    ids = await upload_all(session, server.url, album_id, photos)
                    await watcher.wait_for(set(ids), timeout=900)
                    elapsed = time.perf_counter() - start
                    await asyncio.sleep(0.3)
        after_main, after_tree, _ = tree_rss(server.process.pid)
    finally:
        server.stop()
    mb = 1024 * 1024
    return {"idle_main_mb": idle_main / mb, "idle_tree_mb": idle_tree / mb, "idle_processes": 1 + len(idle_children),
            "idle_tree_pss_mb": idle_pss / mb,
            "peak_tree_mb": sampler.peak_tree / mb, "peak_main_mb": sampler.peak_main / mb,
            "peak_child_mb": sampler.peak_child / mb, "after_main_mb": after_main / mb, "after_tree_mb": after_tree / mb,
            "photos": len(photos), "seconds": elapsed, "photos_per_min": len(photos) / elapsed * 60}


def memory(root: Path, photos: list[bytes]) -> dict:
    return asyncio.run(_memory(root, photos))


if __name__ == "__main__":
    print(json.dumps({"usage": "run through bench/run.py"}))
