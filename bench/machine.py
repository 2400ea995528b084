"""The machine a bench ran on: the facts every report starts with (bench/run.py, bench/memory_budget.py)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> dict:
    import aiohttp
    import PIL

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "pillow": PIL.__version__,
            "aiohttp": aiohttp.__version__, "kernel": platform.release()}
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import pyvips

        info["pyvips"] = f"{pyvips.__version__} (libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)})"
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        info["pyvips"] = f"unavailable: {exc}"
    try:
        import huey

        info["huey"] = huey.__version__
    except ImportError:
        pass
    import sqlite3

    info["sqlite"] = sqlite3.sqlite_version
    return info


def machine_md(info: dict) -> list[str]:
    """The report's "Machine" section."""
    return ["## Machine", "",
            f"- CPU: {info['cpu']}, {info['cores']} cores"
            + (f", {info['memory_gb']} GB RAM" if "memory_gb" in info else ""),
            f"- Python {info['python']}, Pillow {info['pillow']}, aiohttp {info['aiohttp']}, SQLite {info['sqlite']}, "
            f"pyvips {info.get('pyvips')}, huey {info.get('huey', 'n/a')}, Linux {info['kernel']}", ""]
