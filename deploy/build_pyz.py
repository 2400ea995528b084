"""Build photoq.pyz: photoq and every dependency in one file (shiv), for the Python that will run it.

`make pyz` runs this with the project's virtualenv. The target interpreter (`--python`, default python3) is asked
for its version: the file holds compiled wheels (Pillow, pillow-heif, aiohttp ...), which only load under the
Python version and the machine type they were built for. When the target's version differs from the
virtualenv's, pip is told to fetch wheels for the target's version instead (and then only wheels will do).

Every dependency, transitive ones too, is pinned by deploy/constraints.txt (`make constraints` refreshes it), so a
release built twice from one commit holds the same libraries.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "deploy" / "constraints.txt"
ASK_VERSION = "import sys; print(sys.implementation.name, sys.version_info[0], sys.version_info[1])"


def target_version(python: str) -> tuple[str, int, int]:
    answer = subprocess.run([python, "-c", ASK_VERSION], capture_output=True, text=True, check=True).stdout.split()
    return answer[0], int(answer[1]), int(answer[2])


def pip_target_args(python: str) -> list[str]:
    implementation, major, minor = target_version(python)
    if (implementation, major, minor) == (sys.implementation.name, *sys.version_info[:2]):
        return []
    if implementation != "cpython":
        raise SystemExit(f"build_pyz: {python} is {implementation}; photoq.pyz is built for CPython only")
    return ["--python-version", f"{major}.{minor}", "--implementation", "cp", "--abi", f"cp{major}{minor}",
            "--only-binary=:all:"]


def shebang(python: str) -> str:
    return python if os.path.isabs(python) else f"/usr/bin/env {python}"


def build_wheel(into: Path) -> Path:
    # setuptools reuses build/lib; a file deleted from the repository must not ride along from an older build.
    shutil.rmtree(REPO / "build" / "lib", ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(into), str(REPO)],
                   check=True)
    (wheel,) = into.glob("photoq-*.whl")
    return wheel


def build(python: str, output: Path) -> None:
    extra_pip_args = pip_target_args(python)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="photoq-pyz-") as scratch:
        wheel = build_wheel(Path(scratch))
        partial = output.with_name(output.name + ".partial")
        subprocess.run([sys.executable, "-m", "shiv", "--console-script", "photoq", "--output-file", str(partial),
                        "--python", shebang(python), "--reproducible", "--compressed",
                        str(wheel), "--constraint", str(CONSTRAINTS), *extra_pip_args], check=True)
    # Renamed into place: a running photoq.pyz (or one being copied) never sees a half-written file.
    os.replace(partial, output)
    print(f"built {output} ({output.stat().st_size / 1e6:.1f} MB) for {python}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3", help="the interpreter that will run the file (default python3)")
    parser.add_argument("--output", type=Path, default=REPO / "dist" / "photoq.pyz")
    args = parser.parse_args()
    build(args.python, args.output)


if __name__ == "__main__":
    main()
