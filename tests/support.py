"""Helpers shared by the tests: real image bytes, an SSE reader, multipart bodies and a real server process."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from PIL import Image

TEST_TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
REPO_ROOT = Path(__file__).resolve().parent.parent


# -- images ------------------------------------------------------------------------------------------------------


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth gradient with a seed-dependent tint: cheap to make, distinct per seed, compresses like a photo."""
    gradient = Image.linear_gradient("L").resize((width, height))
    tint = Image.new("RGB", (width, height), ((seed * 47) % 256, (seed * 91) % 256, (seed * 13 + 80) % 256))
    return Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90).resize((width, height)),
                               tint.getchannel(2)))


def noisy_png(width: int, height: int, seed: int = 0) -> bytes:
    """Incompressible pixels: a PNG whose size is about 3 bytes per pixel."""
    import random

    pixels = random.Random(seed).randbytes(width * height * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def image_bytes(fmt: str, width: int = 640, height: int = 480, seed: int = 0, **save_args) -> bytes:
    image = photo_like(width, height, seed)
    if fmt == "PNG" and save_args.pop("alpha", False):
        image = image.convert("RGBA")
    if fmt == "GIF":
        image = image.convert("P")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_args)
    return buffer.getvalue()


def jpeg(width: int = 640, height: int = 480, seed: int = 0, orientation: int | None = None) -> bytes:
    image = photo_like(width, height, seed)
    buffer = io.BytesIO()
    if orientation is None:
        image.save(buffer, format="JPEG", quality=85)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(buffer, format="JPEG", quality=85, exif=exif.tobytes())
    return buffer.getvalue()


def heic(image: Image.Image | None = None, *, width: int = 640, height: int = 480, seed: int = 0,
         exif: Image.Exif | None = None, **save_args) -> bytes:
    """A real HEIC from libheif's HEVC encoder (through pillow-heif, not registered with Pillow). As an iPhone does,
    an Orientation in `exif` is written twice: as the EXIF tag and as the irot/imir transform of the stored pixels."""
    import pillow_heif

    image = photo_like(width, height, seed) if image is None else image
    if exif is not None:
        save_args["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=save_args.pop("quality", 85), **save_args)
    return buffer.getvalue()


# -- HTTP --------------------------------------------------------------------------------------------------------


def multipart(*files: tuple[str, bytes], field: str = "file") -> aiohttp.FormData:
    form = aiohttp.FormData()
    for filename, data in files:
        form.add_field(field, data, filename=filename, content_type="application/octet-stream")
    return form


async def log_in(client, token: str = TEST_TOKEN, next_path: str = "/", headers: dict | None = None):
    """Log in through the login form, as a person does; returns the response (303, with the session cookie)."""
    async with client.post("/login", data={"token": token, "next": next_path}, headers=headers,
                           allow_redirects=False) as response:
        assert response.status == 303, response.status
        return response


def session_csrf(client) -> str:
    """The CSRF token of the session `client` is logged in with (an aiohttp test client of a photoq app)."""
    from photoq.web.keys import SESSIONS

    cookie = next(c for c in client.session.cookie_jar if c.key == "photoq_session")
    return client.app[SESSIONS].csrf_token(cookie.value)


@dataclass
class SseEvent:
    id: int | None
    name: str
    data: dict


class SseReader:
    """Reads `text/event-stream` from an aiohttp response, one event at a time; comments are counted."""

    def __init__(self, response: aiohttp.ClientResponse):
        self.response = response
        self.comments = 0

    async def next(self, timeout: float = 30) -> SseEvent:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> SseEvent:
        fields: dict[str, str] = {}
        while True:
            line = await self.response.content.readline()
            if not line:
                raise EOFError("the event stream ended")
            line = line.decode().rstrip("\r\n")
            if line == "":
                if "data" in fields:
                    return SseEvent(int(fields["id"]) if "id" in fields else None, fields.get("event", "message"),
                                    json.loads(fields["data"]))
                fields.clear()
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


async def until(predicate, timeout: float = 60, what: str = "condition") -> None:
    """Wait for an outcome that has no event to wait on: `predicate()` returns a bool, or an awaitable of one."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = predicate()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def wait_for_photos(client, photo_ids, statuses=("complete",), timeout: float = 120, album_id=None) -> dict:
    """Follow /api/events until every photo is in one of `statuses`; returns id -> last photo event.

    Subscribes first, then reads the current state from the API, so no change can slip between the two.
    """
    wanted = set(photo_ids)
    query = f"?album_id={album_id}" if album_id is not None else ""
    async with client.get(f"/api/events{query}", headers=AUTH) as response:
        assert response.status == 200
        reader = SseReader(response)
        await reader.next()  # initial stats
        latest = {}
        for photo_id in wanted:
            async with client.get(f"/api/photos/{photo_id}", headers=AUTH) as r:
                latest[photo_id] = await r.json()
        deadline = time.monotonic() + timeout
        while not all(latest[p]["processing_status"] in statuses for p in wanted):
            event = await reader.next(timeout=max(0.1, deadline - time.monotonic()))
            if event.name == "photo" and event.data["id"] in wanted:
                latest[event.data["id"]] = event.data
        return latest


# -- a real `photoq serve` process ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`photoq serve` in a subprocess on a free port, with its output in a log file."""

    def __init__(self, data_dir: Path, workers: int = 2, extra_env: dict | None = None, config: Path | None = None,
                 preexec_fn=None):
        self.data_dir = data_dir
        self.preexec_fn = preexec_fn
        self.workers = workers
        self.port = free_port()
        self.extra_env = extra_env or {}
        self.config = config
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN, **self.extra_env}
        env.pop("PHOTOQ_CONFIG", None)
        args = [sys.executable, "-m", "photoq", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
                "--workers", str(self.workers)]
        if self.config:
            args += ["--config", str(self.config)]
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.data_dir.parent,
                                        start_new_session=True, preexec_fn=self.preexec_fn)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"photoq exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"photoq did not start listening:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        """SIGKILL the server and its whole process group (the image processes too), as a power cut would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        stop_process_group(self.process)


def stop_process_group(process: subprocess.Popen | None) -> None:
    """SIGKILL a server started with start_new_session, with its image processes, if it still runs (test cleanup)."""
    if process is not None and process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)
