"""Pipeline comparison: photoq's imaging.render vs naive Pillow vs pyvips, each timed in a fresh child process.

Run by run.py; `python bench/pipeline.py child NAME SOURCE OUTDIR REPS` is the child's entry point.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUALITY = 80  # photoq's default output quality


def fit_within(source: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    scale = min(box[0] / source[0], box[1] / source[1])
    if scale >= 1:
        return source
    return tuple(max(1, math.floor(side * scale + 0.5)) for side in source)  # type: ignore[return-value]


def default_specs(method: int):
    from photoq import imaging
    from photoq.config import DEFAULT_OUTPUTS

    return [imaging.OutputSpec(o.name, o.width, o.height, o.format, QUALITY, method) for o in DEFAULT_OUTPUTS]


# -- the pipelines (each writes one WebP per default output into `dest`) ----------------------------------------


def make_photoq(method: int):
    from photoq import imaging

    if "module" not in imaging._FAST_JPEG:
        imaging.init_worker(150_000_000)
    specs = default_specs(method)

    def run(source: str, dest: str) -> None:
        imaging.render(source, specs, dest, fsync=False)

    return run


def make_photoq_pillow(method: int):
    """photoq's render with Pillow decoding every JPEG, as before libjpeg-turbo's scaled decode (and as on a platform
    without simplejpeg): draft() only when the source is at least twice the largest output."""
    from photoq import imaging

    imaging._FAST_JPEG["module"] = None
    return make_photoq(method)


def make_naive():
    from PIL import Image, ImageOps

    specs = default_specs(4)

    def run(source: str, dest: str) -> None:
        with Image.open(source) as opened:
            im = ImageOps.exif_transpose(opened)
        for spec in specs:
            copy = im.copy()
            copy.thumbnail((spec.width, spec.height), Image.Resampling.LANCZOS)
            copy.save(os.path.join(dest, spec.name + ".webp"), "WEBP", quality=QUALITY)  # default method (4)

    return run


def make_vips(effort: int):
    import pyvips

    pyvips.cache_set_max(0)  # no reuse between runs
    specs = default_specs(effort)

    def run(source: str, dest: str) -> None:
        header = pyvips.Image.new_from_file(source)
        size = (header.width, header.height)
        orientation = header.get("orientation") if header.get_typeof("orientation") else 1
        if orientation >= 5:
            size = size[::-1]
        plan = sorted(specs, key=lambda s: math.prod(fit_within(size, (s.width, s.height))), reverse=True)
        first = plan[0]
        # thumbnail() shrinks on load where it can and applies the EXIF orientation; decoded once, then cascaded.
        current = pyvips.Image.thumbnail(source, first.width, height=first.height, size="down").copy_memory()
        current.webpsave(os.path.join(dest, first.name + ".webp"), Q=QUALITY, effort=effort, keep="none")
        for spec in plan[1:]:
            current = current.thumbnail_image(spec.width, height=spec.height, size="down").copy_memory()
            current.webpsave(os.path.join(dest, spec.name + ".webp"), Q=QUALITY, effort=effort, keep="none")

    return run


PIPELINES = {
    "photoq": lambda method: make_photoq(method),
    "photoq-pillow": lambda method: make_photoq_pillow(method),
    "naive": lambda method: make_naive(),
    "vips": lambda method: make_vips(method),
    "vips-e4": lambda method: make_vips(4),
}


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over exec() from the forked parent."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(name: str, method: int, source: str, dest: str, reps: int) -> dict:
    os.makedirs(dest, exist_ok=True)
    run = PIPELINES[name](method)
    base_rss = peak_rss_kb()
    run(source, dest)  # warm-up: imports, codec tables, page cache
    cpu, wall = [], []
    for _ in range(reps):
        c, w = time.process_time(), time.perf_counter()
        run(source, dest)
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return {
        "cpu_ms": statistics.median(cpu), "cpu_min_ms": min(cpu), "wall_ms": statistics.median(wall),
        "peak_rss_mb": peak_rss_kb() / 1024,
        "base_rss_mb": base_rss / 1024,
        "bytes": sum(f.stat().st_size for f in Path(dest).glob("*.webp")),
    }


def run_child(name: str, method: int, source: Path, dest: Path, reps: int) -> dict:
    env = {**os.environ, "VIPS_CONCURRENCY": "1", "OMP_NUM_THREADS": "1"}  # one core each, as in the pool
    out = subprocess.run(
        [sys.executable, __file__, "child", name, str(method), str(source), str(dest), str(reps)],
        check=True, capture_output=True, text=True, env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- quality ------------------------------------------------------------------------------------------------------


class References:
    """Full-resolution LANCZOS resizes of the upright source, per output size."""

    def __init__(self, source: Path):
        from PIL import Image, ImageOps

        with Image.open(source) as opened:
            self.full = ImageOps.exif_transpose(opened).convert("RGB")
        self._cache: dict = {}

    def at(self, size):
        from PIL import Image

        if size not in self._cache:
            self._cache[size] = self.full.resize(size, Image.Resampling.LANCZOS)
        return self._cache[size]


def output_quality(refs: References, dest: Path, names: list[str]) -> dict[str, float]:
    from PIL import Image

    from quality import ssim

    scores = {}
    for name in names:
        with Image.open(dest / f"{name}.webp") as out:
            out.load()
            scores[name] = ssim(out, refs.at(out.size))
    return scores


if __name__ == "__main__":
    if sys.argv[1] == "child":
        sys.path.insert(0, str(REPO))
        _, _, name, method, source, dest, reps = sys.argv
        print(json.dumps(child(name, int(method), source, dest, int(reps))))


# -- JPEG decoders ------------------------------------------------------------------------------------------------


def decoder_comparison(sources: dict[str, Path], target: tuple[int, int] = (2160, 1620), reps: int = 5) -> dict:
    """CPU ms to decode each source scaled to cover `target` and LANCZOS-resize it to `target` (median of `reps`):
    Pillow (full decode: the scale is below 2x), simplejpeg and PyTurboJPEG (libjpeg-turbo's M/8 scaled decode)."""
    from PIL import Image

    def pillow(data: bytes):
        import io

        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", target)
            im.load()
            return im.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)

    def as_image(pixels, mode: str):
        return Image.frombuffer(mode, (pixels.shape[1], pixels.shape[0]), pixels, "raw", mode, 0, 1).resize(
            target, Image.Resampling.LANCZOS, reducing_gap=2.0)

    decoders: dict = {"Pillow": pillow}
    versions = {}
    try:
        import simplejpeg

        decoders["simplejpeg"] = lambda data: as_image(simplejpeg.decode_jpeg(
            data, "RGBX", min_width=target[0], min_height=target[1]), "RGBX")
        versions["simplejpeg"] = simplejpeg.__version__
    except ImportError as exc:
        versions["simplejpeg"] = f"n/a ({exc})"
    try:
        import turbojpeg

        tj = turbojpeg.TurboJPEG()

        def pyturbojpeg(data: bytes):
            width, height = tj.decode_header(data)[:2]
            factor = next(f for f in sorted(tj.scaling_factors, key=lambda f: f[0] / f[1])
                          if f[0] <= f[1] and -(-width * f[0] // f[1]) >= target[0]
                          and -(-height * f[0] // f[1]) >= target[1])
            return as_image(tj.decode(data, pixel_format=turbojpeg.TJPF_RGBX, scaling_factor=factor), "RGBX")

        decoders["PyTurboJPEG"] = pyturbojpeg
        versions["PyTurboJPEG"] = getattr(turbojpeg, "__version__", "?")
    except Exception as exc:  # noqa: BLE001 - missing package or libturbojpeg
        versions["PyTurboJPEG"] = f"n/a ({type(exc).__name__}: {str(exc).splitlines()[0]})"
    results: dict = {"versions": versions, "target": list(target), "rows": {}}
    for name, path in sources.items():
        data = path.read_bytes()
        row = {}
        for decoder, run in decoders.items():
            run(data)
            times = []
            for _ in range(reps):
                started = time.process_time()
                run(data)
                times.append((time.process_time() - started) * 1000)
            row[decoder] = statistics.median(times)
        results["rows"][name] = row
    return results
