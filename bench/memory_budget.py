"""`make bench-memory`: `[processing] memory_budget_mb` against no limit, on a batch of 50 MP panoramas.

A live `photoq serve` with workers=4 (a Raspberry Pi 4 has four cores, and four workers is what it would run)
processes the same batch twice: with memory_budget_mb = 0 (no limit: the baseline) and with the budget photoq
computes by default on a 2 GB Pi. The whole process tree (server, forkserver, image processes) is sampled every
50 ms from the first upload until every photo is complete. Then, where this machine lets us create a memory cgroup,
both cases run again under a hard memory limit modelling what a 2 GB Pi leaves for photoq, to see whether image
processes get killed. Before that, one image process per format and job kind measures the real peak beside
photoq's estimate (imaging.estimated_peak_bytes).

    python bench/memory_budget.py [--photos 8] [--batches png,webp] [--budget-mb 900] [--limit-mb 1536] [--no-cgroup]

Writes bench/MEMORY.md (and bench/memory.json). The panoramas are generated once (bench/scenes.py) and cached in
bench/out/panoramas/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

MIB = 1024 * 1024
PANORAMA = (10000, 5000)  # 50 MP, 2:1
CACHE = BENCH / "out" / "panoramas"
LABELS = {"jpeg": "JPEG q90", "png": "PNG", "tiff": "TIFF deflate", "webp": "WebP q85"}  # as _encode writes them
KINDS = ("thumbnail", "variant")
KILLED = "The image process stopped unexpectedly"
# A Raspberry Pi 4 with 2 GB reports about 1.8 GiB of RAM (the rest is reserved for the GPU); photoq's default
# budget is half of it. The OS, sshd and the page cache's working set take ~300 MB, which leaves ~1.5 GiB for photoq.
PI_BUDGET_MB = 900
PI_LIMIT_MB = 1536
SAMPLE_SECONDS = 0.05  # how often the process tree's RSS is sampled
UPLOADERS = 2  # concurrent uploads


# -- panoramas ----------------------------------------------------------------------------------------------------


def _encode(img, fmt: str, path: Path) -> None:
    options = {"jpeg": {"quality": 90}, "png": {"compress_level": 1}, "tiff": {"compression": "tiff_deflate"},
               "webp": {"quality": 85, "method": 0}}[fmt]
    tmp = path.with_suffix(".tmp")
    img.save(tmp, fmt.upper(), **options)
    tmp.replace(path)


def _base_scene():
    import numpy as np
    from PIL import Image

    import scenes

    base = CACHE / "base.png"
    if not base.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        _encode(scenes.scene(*PANORAMA, seed=50), "png", base)
    with Image.open(base) as im:
        return np.asarray(im.convert("RGB"))


def panoramas(fmt: str, n: int) -> list[Path]:
    """`n` distinct 50 MP panoramas in `fmt`: one dead-leaves scene, rolled sideways by a different amount each
    (a panorama wraps around), so every file decodes like a photograph and has its own bytes."""
    from PIL import Image

    from photoq import imaging

    paths = [CACHE / f"pano-{i}{imaging.EXTENSIONS[fmt]}" for i in range(n)]
    missing = [i for i, p in enumerate(paths) if not p.exists()]
    if missing:
        import numpy as np

        started = time.perf_counter()
        pixels = _base_scene()
        for i in missing:
            _encode(Image.fromarray(np.roll(pixels, i * 997, axis=1)), fmt, paths[i])
        print(f"made {len(missing)} {fmt} panoramas in {time.perf_counter() - started:.0f}s (cached in "
              f"{CACHE.relative_to(REPO)})", flush=True)
    return paths


# -- one image process: real peak beside the estimate ------------------------------------------------------------


def measure_one(kind: str, path: str) -> dict:
    """In this (fresh) process, as an image process does: render `path` to the `kind` job's outputs."""
    import psutil

    import pipeline
    from photoq import imaging
    from photoq.config import Settings
    from photoq.workers import output_specs

    settings = Settings()
    specs = output_specs(settings.outputs_for(kind), settings)
    imaging.init_worker(settings.upload.max_pixels, 0)
    before = psutil.Process().memory_info().rss
    with tempfile.TemporaryDirectory() as dest:
        started = time.process_time()
        imaging.render(path, specs, dest, fsync=False)
        cpu = time.process_time() - started
    return {"before": before, "peak": pipeline.peak_rss_kb() * 1024, "cpu_s": cpu}


def estimate(kind: str, fmt: str, size: tuple[int, int]) -> int:
    from photoq import imaging
    from photoq.config import Settings
    from photoq.workers import output_specs

    settings = Settings()
    return imaging.estimated_peak_bytes(*size, fmt, output_specs(settings.outputs_for(kind), settings))


def per_format(formats: list[str]) -> dict:
    rows = {}
    for fmt in formats:
        path = panoramas(fmt, 1)[0]
        for kind in KINDS:
            out = subprocess.run([sys.executable, __file__, "--measure-one", kind, str(path)], check=True,
                                 capture_output=True, text=True).stdout
            measured = json.loads(out)
            rows[f"{fmt} {kind}"] = {**measured, "estimate": estimate(kind, fmt, PANORAMA),
                                     "file_mb": path.stat().st_size / 1e6}
            r = rows[f"{fmt} {kind}"]
            print(f"  {fmt:5s} {kind:9s} estimate {r['estimate'] / MIB:5.0f} MiB   measured peak "
                  f"{(r['peak'] - r['before']) / MIB:5.0f} MiB above the process's {r['before'] / MIB:.0f} MiB "
                  f"(peak RSS {r['peak'] / MIB:.0f} MiB)   {r['cpu_s']:.2f} s CPU", flush=True)
    return rows


# -- memory cgroup ------------------------------------------------------------------------------------------------


class MemoryCgroup:
    """A child of this process's own memory cgroup (v1 or v2) with a hard limit; processes join it at exec."""

    def __init__(self, path: Path, version: int, limit: int):
        self.path, self.version, self.limit = path, version, limit

    @classmethod
    def create(cls, name: str, limit: int) -> "MemoryCgroup":
        """Raise OSError (with the reason) when this machine does not let us."""
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        v1 = [line.split(":", 2)[2] for line in lines if line.split(":", 2)[1].split(",").count("memory")]
        if v1 and Path("/sys/fs/cgroup/memory").is_dir():
            parent, version = Path("/sys/fs/cgroup/memory" + v1[0]), 1
        else:
            v2 = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
            parent, version = Path("/sys/fs/cgroup" + (v2[0] if v2 else "/")), 2
            controllers = (parent / "cgroup.subtree_control")
            if not controllers.exists() or "memory" not in controllers.read_text().split():
                raise OSError(f"no memory controller enabled for children of {parent}")
        path = parent / name
        path.mkdir()
        group = cls(path, version, limit)
        try:
            if version == 1:
                (path / "memory.limit_in_bytes").write_text(str(limit))
            else:
                (path / "memory.max").write_text(str(limit))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
        except OSError:
            group.remove()
            raise
        return group

    def join(self) -> None:
        """For preexec_fn: move the calling (child) process into the group."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def stats(self) -> dict:
        if self.version == 1:
            peak = int((self.path / "memory.max_usage_in_bytes").read_text())
            oom = re.search(r"oom_kill (\d+)", (self.path / "memory.oom_control").read_text())
        else:
            peak_file = self.path / "memory.peak"
            peak = int(peak_file.read_text()) if peak_file.exists() else 0
            oom = re.search(r"oom_kill (\d+)", (self.path / "memory.events").read_text())
        return {"peak": peak, "oom_kills": int(oom.group(1)) if oom else 0, "version": self.version}

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


# -- the service --------------------------------------------------------------------------------------------------


def start_server(root: Path, name: str, workers: int, budget_mb: int, cgroup: MemoryCgroup | None):
    from tests.support import TEST_TOKEN, free_port, stop_process_group

    import service

    data = root / name
    data.mkdir(parents=True)
    config = root / f"{name}.toml"
    config.write_text(f"{service.BENCH_CONFIG}\n[processing]\nmemory_budget_mb = {budget_mb}\n")
    port = free_port()
    env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN}
    env.pop("PHOTOQ_CONFIG", None)
    log_path = root / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "photoq", "serve", "--port", str(port), "--data-dir", str(data), "--workers",
             str(workers), "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
            preexec_fn=cgroup.join if cgroup else None)
    url = f"http://127.0.0.1:{port}"
    try:
        service.wait_for_port(port, timeout=60)
    except OSError:
        stop_process_group(process)
        raise RuntimeError(f"photoq did not start:\n{log_path.read_text(errors='replace')}") from None
    return process, url, log_path


async def metric(session, url: str, name: str) -> float:
    from tests.support import AUTH

    async with session.get(f"{url}/metrics", headers=AUTH) as r:
        text = await r.text()
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


async def killed_attempts(session, url: str, ids: list[int]) -> tuple[int, int]:
    """(attempts that ended because the image process died, attempts in all)."""
    from tests.support import AUTH

    killed = total = 0
    for photo_id in ids:
        async with session.get(f"{url}/api/photos/{photo_id}/history", headers=AUTH) as r:
            for attempt in (await r.json())["attempts"]:
                total += 1
                killed += KILLED in (attempt["error"] or "")
    return killed, total


async def _batch(root: Path, name: str, files: list[Path], workers: int, budget_mb: int,
                 cgroup: MemoryCgroup | None, timeout: float) -> dict:
    import service
    from tests.support import stop_process_group

    process, url, log_path = start_server(root, name, workers, budget_mb, cgroup)
    result: dict = {"budget_mb": budget_mb, "workers": workers, "photos": len(files)}
    try:
        await asyncio.sleep(2)  # the image processes start with the server
        async with service.client_session() as session:
            album_id = await service.create_album(session, url)
            async with service.CompletionWatcher(session, url) as watcher:
                with service.RssSampler(process.pid, interval=SAMPLE_SECONDS) as sampler:
                    start = time.perf_counter()
                    # The files are read one at a time, as a client streams them; UPLOADERS uploads at once.
                    ids = await service.upload_all(session, url, album_id, files, UPLOADERS)
                    uploaded = time.perf_counter() - start
                    deadline = start + timeout
                    while not set(ids) <= watcher.done.keys() and time.perf_counter() < deadline:
                        if process.poll() is not None:
                            break
                        await asyncio.sleep(0.1)
                    elapsed = time.perf_counter() - start
            done = {i: watcher.done.get(i) for i in ids}
            server_alive = process.poll() is None
            if server_alive:
                result["memory_waits"] = await metric(session, url, "photoq_memory_waits_total")
                result["killed_attempts"], result["attempts"] = await killed_attempts(session, url, ids)
        result.update({
            "complete": sum(s == "complete" for s in done.values()),
            "failed": sum(s == "failed" for s in done.values()),
            "unfinished": sum(s is None for s in done.values()),
            "server_alive": server_alive, "seconds": elapsed, "upload_seconds": uploaded,
            "photos_per_min": len(files) / elapsed * 60,
            "peak_tree": sampler.peak_tree, "peak_main": sampler.peak_main, "peak_child": sampler.peak_child})
    finally:
        stop_process_group(process)
        if cgroup is not None:
            result["cgroup"] = cgroup.stats()
    if not result["server_alive"]:
        result["server_log_tail"] = log_path.read_text(errors="replace")[-2000:]
    return result


def batch(root: Path, name: str, files: list[Path], workers: int, budget_mb: int,
          cgroup: MemoryCgroup | None = None, timeout: float = 300) -> dict:
    r = asyncio.run(_batch(root, name, files, workers, budget_mb, cgroup, timeout))
    line = (f"  {name:22s} peak tree {r['peak_tree'] / MIB:5.0f} MiB (largest image process "
            f"{r['peak_child'] / MIB:4.0f} MiB)  {r['seconds']:5.1f} s  {r['photos_per_min']:5.1f} photos/min  "
            f"memory waits {r.get('memory_waits', float('nan')):.0f}  complete {r['complete']}/{r['photos']}")
    if "cgroup" in r:
        line += (f"  | cgroup peak with page cache {r['cgroup']['peak'] / MIB:.0f} MiB, OOM kills {r['cgroup']['oom_kills']}, "
                 f"killed attempts {r.get('killed_attempts', '?')}/{r.get('attempts', '?')}, failed {r['failed']}, "
                 f"unfinished {r['unfinished']}" + ("" if r["server_alive"] else ", SERVER DIED"))
    print(line, flush=True)
    return r


# -- the report ---------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--batches", default="png,webp",
                        help="formats of the batches, comma-separated (JPEGs are drafted by libjpeg, so a 50 MP "
                             "JPEG never comes near the budget; PNG, TIFF and WebP decode in full)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget-mb", type=int, default=PI_BUDGET_MB)
    parser.add_argument("--limit-mb", type=int, default=PI_LIMIT_MB, help="the cgroup's hard limit")
    parser.add_argument("--no-cgroup", action="store_true")
    parser.add_argument("--formats", default="jpeg,png,tiff,webp", help="formats of the per-process table")
    parser.add_argument("--output", type=Path, default=BENCH / "MEMORY.md", help="the report (memory.json beside it)")
    parser.add_argument("--measure-one", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_one:
        print(json.dumps(measure_one(*args.measure_one)))
        return 0

    from machine import machine

    started = time.perf_counter()
    info = machine()
    w, h = PANORAMA
    formats = [f for f in args.batches.split(",") if f]
    unknown = set(formats) - set(LABELS)
    if unknown:
        parser.error(f"unknown format(s): {', '.join(sorted(unknown))}")
    print(f"memory budget bench: batches of {args.photos} x {w}x{h} ({w * h / 1e6:.0f} MP) panoramas "
          f"({', '.join(formats)}), "
          f"workers={args.workers}\n"
          f"budget {args.budget_mb} MiB: photoq's default on a 2 GB Raspberry Pi 4 (half of the ~1.8 GiB it reports); "
          f"cgroup limit {args.limit_mb} MiB: what such a Pi leaves for photoq after ~300 MB of OS", flush=True)
    results: dict = {"photos": args.photos, "workers": args.workers,
                     "budget_mb": args.budget_mb, "limit_mb": args.limit_mb}
    print("== one image process per format and job kind (estimate: imaging.estimated_peak_bytes)", flush=True)
    results["per_format"] = per_format([f for f in args.formats.split(",") if f])
    results["batches"] = {fmt: format_batches(fmt, args) for fmt in formats}
    results["seconds"] = time.perf_counter() - started
    for fmt, r in results["batches"].items():
        report(fmt, r, args)
    finished = datetime.now(timezone.utc)
    args.output.write_text(markdown(results, info, finished))
    args.output.with_name("memory.json").write_text(json.dumps(
        {"machine": info, "finished_at": finished.isoformat(), "results": results}, indent=2, default=str))
    print(f"\nwrote {args.output} in {results['seconds'] / 60:.1f} min")
    return 0


def format_batches(fmt: str, args) -> dict:
    """The batch in `fmt` with no budget and with the budget, then both again under the memory cgroup."""
    files = panoramas(fmt, args.photos)
    per_photo = {kind: estimate(kind, fmt, PANORAMA) for kind in KINDS}
    print(f"== {fmt}: estimate per panorama: thumbnail job {per_photo['thumbnail'] / MIB:.0f} MiB, variant job "
          f"{per_photo['variant'] / MIB:.0f} MiB; {args.workers} at once would reserve up to "
          f"{args.workers * per_photo['variant'] / MIB:.0f} MiB", flush=True)
    r: dict = {"estimate": per_photo, "file_mb": sum(f.stat().st_size for f in files) / len(files) / 1e6}
    root = Path(tempfile.mkdtemp(prefix="photoq-bench-memory-"))
    try:
        from run import wait_for_quiet

        r["background_load"] = wait_for_quiet()
        print(f"   {fmt}, without a memory limit (background CPU load {r['background_load']:.0%})", flush=True)
        r["free"] = {str(budget): batch(root, f"{fmt}-budget-{budget}", files, args.workers, budget)
                     for budget in (0, args.budget_mb)}
        r["cgroup"] = cgroup_runs(root, fmt, files, args) if not args.no_cgroup else {"skipped": "--no-cgroup"}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return r


def cgroup_runs(root: Path, fmt: str, files: list[Path], args) -> dict:
    print(f"   {fmt}, under a {args.limit_mb} MiB memory cgroup", flush=True)
    runs = {}
    for budget in (0, args.budget_mb):
        try:
            cgroup = MemoryCgroup.create(f"photoq-bench-{os.getpid()}-{fmt}-{budget}", args.limit_mb * MIB)
        except OSError as exc:
            print(f"  no memory cgroup on this machine ({exc}); the survival run is skipped", flush=True)
            return {"unavailable": str(exc)}
        try:
            runs[str(budget)] = batch(root, f"{fmt}-cgroup-budget-{budget}", files, args.workers, budget, cgroup,
                                      timeout=150)
        finally:
            cgroup.remove()
    return runs


def report(fmt: str, r: dict, args) -> None:
    free = r["free"]
    base, budget = free["0"], free[str(args.budget_mb)]
    print(f"\n== summary: {args.photos} x 50 MP {fmt} ({r['file_mb']:.0f} MB each), workers={args.workers}")
    print(f"{'':34s} {'no budget':>12s} {'budget ' + str(args.budget_mb):>12s} {'ratio':>7s}")
    for label, key, scale, fmt in (("peak RSS of the process tree, MiB", "peak_tree", MIB, "{:.0f}"),
                                   ("largest image process, MiB", "peak_child", MIB, "{:.0f}"),
                                   ("time to finish the batch, s", "seconds", 1, "{:.1f}"),
                                   ("photos/min", "photos_per_min", 1, "{:.1f}")):
        a, b = base[key] / scale, budget[key] / scale
        print(f"{label:34s} {fmt.format(a):>12s} {fmt.format(b):>12s} {b / a:7.2f}")
    print(f"{'memory waits (/metrics)':34s} {base.get('memory_waits', 0):12.0f} {budget.get('memory_waits', 0):12.0f}")
    cg = r.get("cgroup", {})
    if "0" in cg:
        for key, label in (("0", "no budget"), (str(args.budget_mb), f"budget {args.budget_mb}")):
            c = cg[key]
            print(f"under {args.limit_mb} MiB cgroup, {label}: {c['complete']}/{c['photos']} complete, "
                  f"{c['failed']} failed, {c['unfinished']} unfinished, OOM kills {c['cgroup']['oom_kills']}, "
                  f"attempts killed {c.get('killed_attempts', '?')} of {c.get('attempts', '?')}, "
                  f"cgroup peak with page cache {c['cgroup']['peak'] / MIB:.0f} MiB, {c['seconds']:.0f} s"
                  + ("" if c["server_alive"] else ", the server itself was killed"))
    else:
        print(f"memory cgroup run: {cg}")


# -- bench/MEMORY.md ----------------------------------------------------------------------------------------------


def markdown(results: dict, info: dict, when: datetime) -> str:
    from machine import machine_md

    out = ["# photoq memory budget results", "",
           f"Generated by `make bench-memory` (bench/memory_budget.py) on {when:%Y-%m-%d %H:%M} UTC in "
           f"{results['seconds'] / 60:.1f} minutes; not part of `make bench`. Every figure below comes from this one "
           "run.", "",
           *machine_md(info),
           "## Method", "", method_md(results, info), ""]
    out += per_format_md(results["per_format"])
    out += batches_md(results)
    return "\n".join(out) + "\n"


def method_md(results: dict, info: dict) -> str:
    w, h = PANORAMA
    workers, budget, limit = results["workers"], results["budget_mb"], results["limit_mb"]
    text = (f"A live `photoq serve` with workers={workers}"
            + (f" (what a Raspberry Pi 4's four cores run; this machine has {info['cores']} cores)"
               if workers == 4 else "")
            + f" processes {results['photos']} distinct {w}x{h} ({w * h / 1e6:.0f} MP) dead-leaves panoramas per "
            f"batch ({', '.join(LABELS[fmt] for fmt in results['batches'])}), uploaded by {UPLOADERS} clients, once "
            f"with `memory_budget_mb = 0` (no limit) and once with {budget} MiB"
            + (" (photoq's default on a 2 GB Pi 4: half of the ~1.8 GiB it reports)" if budget == PI_BUDGET_MB else "")
            + ". The process tree's RSS (server + forkserver + image processes, summed, so shared pages count more "
            f"than once) is sampled every {SAMPLE_SECONDS * 1000:.0f} ms from the first upload until every photo is "
            "complete.")
    versions = sorted({run["cgroup"]["version"] for r in results["batches"].values()
                       for run in r["cgroup"].values() if isinstance(run, dict)})
    if versions:
        text += (" Then both runs are repeated inside a memory cgroup ("
                 + "/".join(f"v{v}" for v in versions) + f", child of the bench's own) limited to {limit} MiB"
                 + (": what a 2 GB Pi leaves for photoq after ~300 MB of OS" if limit == PI_LIMIT_MB else "")
                 + ". The cgroup's peak includes the page cache of the uploads and outputs."
                 + (f" This machine has {info['memory_gb']} GB, so survival is shown by that cgroup's OOM killer, "
                    "not by a real Pi." if "memory_gb" in info else ""))
    return text


def per_format_md(rows: dict) -> list[str]:
    if not rows:
        return []
    w, h = PANORAMA
    held = sorted(r["before"] / MIB for r in rows.values())
    held_text = f"{held[0]:.0f}" if round(held[0]) == round(held[-1]) else f"{held[0]:.0f}-{held[-1]:.0f}"
    out = [f"One image process per format and job kind, {w * h / 1e6:.0f} MP: estimate "
           f"(`imaging.estimated_peak_bytes`) vs measured (VmHWM minus the {held_text} MiB the process holds before "
           "the job); bold where the measured peak exceeds the estimate.", "",
           "| format | " + " | ".join(f"{kind} job: estimate / measured" for kind in KINDS) + " |",
           "|---|" + "---|" * len(KINDS)]
    for fmt in dict.fromkeys(key.split()[0] for key in rows):
        cells = []
        for kind in KINDS:
            r = rows[f"{fmt} {kind}"]
            measured = f"{(r['peak'] - r['before']) / MIB:.0f}"
            cells.append(f"{r['estimate'] / MIB:.0f} / "
                         + (f"**{measured}**" if r["peak"] - r["before"] > r["estimate"] else measured) + " MiB")
        out.append(f"| {LABELS[fmt]} ({rows[f'{fmt} {KINDS[0]}']['file_mb']:.0f} MB) | " + " | ".join(cells) + " |")
    return out + [""]


def batches_md(results: dict) -> list[str]:
    w, h = PANORAMA
    budgets = list(dict.fromkeys(("0", str(results["budget_mb"]))))
    in_cgroup = any(budget in r["cgroup"] for r in results["batches"].values() for budget in budgets)
    out = [f"| batch ({results['photos']} x {w * h / 1e6:.0f} MP) | budget | peak tree RSS | largest image process "
           "| time | photos/min | memory waits |" + (f" under {results['limit_mb']} MiB cgroup |" if in_cgroup else ""),
           "|---|---|---|---|---|---|---|" + ("---|" if in_cgroup else "")]
    notes = {}
    for fmt, r in results["batches"].items():
        base = r["free"]["0"]
        for budget in budgets:
            run = r["free"][budget]
            row = [f"{LABELS[fmt]} ({r['file_mb']:.0f} MB each)", "none" if budget == "0" else f"{budget} MiB",
                   _with_ratio(run, base, "peak_tree", MIB, "{:.0f} MiB"),
                   _with_ratio(run, base, "peak_child", MIB, "{:.0f} MiB"),
                   _with_ratio(run, base, "seconds", 1, "{:.1f} s"),
                   _with_ratio(run, base, "photos_per_min", 1, "{:.1f}"),
                   f"{run['memory_waits']:.0f}" if "memory_waits" in run else "n/a (server died)"]
            if in_cgroup:
                row.append(cgroup_cell(r["cgroup"].get(budget)))
            out.append("| " + " | ".join(row) + " |")
        if "unavailable" in r["cgroup"]:
            notes[f"No memory cgroup: this machine does not let the bench create one ({r['cgroup']['unavailable']}), "
                  f"so the runs under a {results['limit_mb']} MiB limit were skipped."] = None
        elif "skipped" in r["cgroup"]:
            notes[f"The runs under a memory cgroup were skipped (`{r['cgroup']['skipped']}`)."] = None
    loads = ", ".join(f"{LABELS[fmt]} {r['background_load']:.0%}" for fmt, r in results["batches"].items())
    out += ["", "Ratios: the budgeted run against the one without a budget. Background CPU load when each batch "
            f"started (other processes on the machine): {loads}.", ""]
    return out + [line for note in notes for line in (note, "")]


def _with_ratio(run: dict, base: dict, key: str, scale: float, spec: str) -> str:
    text = spec.format(run[key] / scale)
    return text if run is base else f"{text} ({run[key] / base[key]:.2f}x)"


def cgroup_cell(run: dict | None) -> str:
    if run is None:
        return "-"
    text = (f"{run['complete']}/{run['photos']} complete" + (f", {run['failed']} failed" if run["failed"] else "")
            + (f", {run['unfinished']} unfinished" if run["unfinished"] else "")
            + f"; OOM kills {run['cgroup']['oom_kills']}, attempts killed {run.get('killed_attempts', '?')} of "
            f"{run.get('attempts', '?')}; cgroup peak {run['cgroup']['peak'] / MIB:.0f} MiB")
    return text + ("" if run["server_alive"] else "; the server itself was killed")


if __name__ == "__main__":
    sys.exit(main())
