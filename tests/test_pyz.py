"""photoq.pyz: `make pyz` builds one file that a bare system python3, outside any virtualenv, serves photoq from.

One build per test run (session fixture), unpacked into a temporary SHIV_ROOT (not ~/.shiv) removed afterwards.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import aiohttp
import pytest
from packaging.utils import canonicalize_name
from PIL import Image

from photoq.config import DEFAULT_OUTPUTS

from .support import AUTH, TEST_TOKEN, free_port, jpeg, multipart, stop_process_group, wait_for_photos
from .test_constraints import pinned

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "deploy" / "photoq.service"
SANDBOX = Path(__file__).resolve().parent / "service_sandbox.py"
PACKAGE_DATA = sorted(
    [p for p in (REPO / "photoq" / "static").rglob("*") if p.is_file()]
    + [p for p in (REPO / "templates").rglob("*") if p.is_file()]
    + [REPO / "schema.sql"]
)
# Every module of every photoq package (a subpackage left out of the build would only fail when first imported).
PACKAGE_MODULES = sorted(p for p in (REPO / "photoq").rglob("*.py") if "static" not in p.parts)


def is_virtualenv_bin(directory: str) -> bool:
    return (Path(directory).parent / "pyvenv.cfg").is_file()


def outside_virtualenv(**extra: str) -> dict[str, str]:
    """This process's environment as a login shell would have it: no virtualenv on PATH or announced, no
    PYTHONPATH, no photoq settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP") and not k.startswith("PHOTOQ_")}
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep) if d and not is_virtualenv_bin(d))
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def system_python(tmp_path_factory) -> str:
    env = outside_virtualenv()
    python = shutil.which("python3", path=env["PATH"])
    assert python, "no python3 on PATH outside the virtualenv"
    probe = ("import importlib.util, json, sys; print(json.dumps({'prefix': sys.prefix, 'base_prefix': sys.base_prefix,"
             " 'photoq': importlib.util.find_spec('photoq') is not None}))")
    answer = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=env, check=True,
                            cwd=tmp_path_factory.mktemp("probe"))
    facts = json.loads(answer.stdout)
    assert facts["prefix"] == facts["base_prefix"], f"{python} runs inside a virtualenv: {facts}"
    assert not facts["photoq"], f"photoq is importable by {python} already; the test would prove nothing"
    return python


@pytest.fixture(scope="session")
def pyz(tmp_path_factory, system_python) -> Path:
    """`make pyz` into a temporary folder, for the python3 found outside the virtualenv."""
    output = tmp_path_factory.mktemp("pyz") / "photoq.pyz"
    result = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "pyz", f"BIN={Path(sys.executable).parent}",
         f"PYZ={output}", "PYZ_PYTHON=python3"],
        cwd=REPO, env=outside_virtualenv(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"make pyz failed:\n{result.stdout}\n{result.stderr}"
    assert output.is_file() and not output.with_name(output.name + ".partial").exists()
    return output


@pytest.fixture(scope="session")
def shiv_root(tmp_path_factory):
    """Where photoq.pyz unpacks its libraries (about 60 MB): shared by the tests, removed after them."""
    root = tmp_path_factory.mktemp("shiv")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """An empty working directory far from the repository, so nothing can be found there by accident."""
    work = tmp_path / "work"
    work.mkdir()
    return work


def run_pyz(python: str, pyz: Path, *args: str, cwd: Path, shiv_root: Path,
            timeout: float = 120) -> subprocess.CompletedProcess:
    env = outside_virtualenv(SHIV_ROOT=str(shiv_root))
    return subprocess.run([python, str(pyz), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


class PyzServer:
    """`python3 photoq.pyz serve` as the service would run it, optionally behind a launcher (the sandbox)."""

    def __init__(self, python: str, pyz: Path, cwd: Path, shiv_root: Path, launcher: tuple[str, ...] = ()):
        self.port = free_port()
        self.cwd = cwd
        self.data_dir = cwd / "data"
        self.log_path = cwd / "server.log"
        self.args = [*launcher, python, str(pyz), "serve", "--data-dir", "data", "--port", str(self.port),
                     "--workers", "1"]
        self.env = outside_virtualenv(SHIV_ROOT=str(shiv_root), PHOTOQ_AUTH_TOKEN=TEST_TOKEN)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self, timeout: float = 120) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.args, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(base_url=self.url) as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"photoq.pyz exited with {self.process.returncode}:\n{self.log()}")
                try:
                    async with session.get("/healthz") as response:
                        if response.status == 200 and (await response.json()) == {"status": "ok"}:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"photoq.pyz did not answer /healthz:\n{self.log()}")

    def terminate(self, timeout: float = 90) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        stop_process_group(self.process)


async def upload_and_process_one_photo(server: PyzServer) -> int:
    """Upload a real JPEG through the API and wait until its image process has made every output."""
    async with aiohttp.ClientSession(base_url=server.url) as session:
        async with session.post("/api/albums", json={"name": "Garden"}, headers=AUTH) as response:
            assert response.status == 201, await response.text()
            album_id = (await response.json())["id"]
        async with session.post(f"/api/albums/{album_id}/photos", data=multipart(("garden.jpg", jpeg(1600, 1200))),
                                headers=AUTH) as response:
            assert response.status == 202, await response.text()
            photo_id = (await response.json())["photos"][0]["id"]
        latest = await wait_for_photos(session, [photo_id], statuses=("complete", "failed"))
        assert latest[photo_id]["processing_status"] == "complete", f"{latest}\n{server.log()}"
        async with session.get(f"/api/photos/{photo_id}/file?variant=thumb-150", headers=AUTH) as response:
            assert response.status == 200 and "X-Photoq-Fallback" not in response.headers
            thumbnail = Image.open(io.BytesIO(await response.read()))
            assert thumbnail.format == "WEBP" and max(thumbnail.size) == 150
    outputs = [p for p in (server.data_dir / "variants").rglob("*") if p.is_file()]
    assert sorted(p.stem for p in outputs) == sorted(o.name for o in DEFAULT_OUTPUTS)
    return photo_id


def test_pyz_carries_every_module_the_templates_schema_and_static_files(pyz):
    with zipfile.ZipFile(pyz) as archive:
        names = set(archive.namelist())
        packaged = {p: f"site-packages/photoq/{p.relative_to(REPO).as_posix().removeprefix('photoq/')}"
                    for p in PACKAGE_DATA + PACKAGE_MODULES}
        missing = [name for name in packaged.values() if name not in names]
        assert not missing, f"not in photoq.pyz: {missing}"
        assert archive.read(packaged[REPO / "schema.sql"]) == (REPO / "schema.sql").read_bytes()
    # The libraries inside are exactly deploy/constraints.txt's, at its versions.
    carried = {canonicalize_name(found[1]): found[2] for name in names
               if (found := re.fullmatch(r"site-packages/([^/]+)-([^-/]+)\.dist-info/METADATA", name))}
    del carried["photoq"]
    assert carried == pinned()
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_pyz_answers_help_from_the_system_python_and_from_its_shebang(pyz, system_python, run_dir, shiv_root):
    result = run_pyz(system_python, pyz, "--help", cwd=run_dir, shiv_root=shiv_root)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "status", "retry-failed", "login-url", "doctor"):
        assert command in result.stdout
    direct = subprocess.run([str(pyz), "serve", "--help"], capture_output=True, text=True, cwd=run_dir,
                            env=outside_virtualenv(SHIV_ROOT=str(shiv_root)), timeout=120)
    assert direct.returncode == 0, direct.stderr
    assert "--data-dir" in direct.stdout
    assert list(shiv_root.glob("photoq.pyz_*/site-packages/photoq/templates/login.html")), \
        "the libraries were not unpacked under SHIV_ROOT"


async def test_pyz_serves_processes_a_photo_and_stops_cleanly_outside_any_virtualenv(pyz, system_python, run_dir,
                                                                                     shiv_root):
    server = PyzServer(system_python, pyz, run_dir, shiv_root)
    try:
        await server.start()
        photo_id = await upload_and_process_one_photo(server)
        async with aiohttp.ClientSession(base_url=server.url) as session:
            async with session.get("/login") as response:
                assert response.status == 200
                assert 'action="/login"' in await response.text()
            async with session.get("/static/photoq.css") as response:
                assert response.status == 200
                assert await response.read() == (REPO / "photoq" / "static" / "photoq.css").read_bytes()
            async with session.get(f"/photos/{photo_id}", headers=AUTH) as response:
                assert response.status == 200
                assert "garden.jpg" in await response.text()
        assert server.terminate() == 0, server.log()
    finally:
        server.stop()

    status = run_pyz(system_python, pyz, "status", "--data-dir", "data", cwd=run_dir, shiv_root=shiv_root)
    assert status.returncode == 0, status.stderr
    assert "complete 1" in status.stdout
    doctor = run_pyz(system_python, pyz, "doctor", "--data-dir", "data", cwd=run_dir, shiv_root=shiv_root)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is needed to expand the "
                    "unit's system-call groups")
async def test_pyz_works_under_the_system_call_restrictions_of_the_service_unit(pyz, system_python, run_dir,
                                                                               shiv_root):
    server = PyzServer(system_python, pyz, run_dir, shiv_root,
                       launcher=(system_python, str(SANDBOX), str(UNIT), "--"))
    try:
        await server.start()
        await upload_and_process_one_photo(server)
        assert server.terminate() == 0, server.log()
    finally:
        server.stop()
