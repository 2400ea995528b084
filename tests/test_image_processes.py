"""The image processes: started with the server, at a lower CPU priority than the web process."""

from __future__ import annotations

import asyncio
import os
import time

from photoq.web.keys import WORKERS
from photoq.workers import IMAGE_PROCESS_NICENESS


async def image_process_pids(pool, count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(pool.child_pids()) < count:
        assert time.monotonic() < deadline, f"{count} image processes did not start"
        await asyncio.sleep(0.05)
    return pool.child_pids()


def niceness(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


async def test_image_processes_start_with_the_server_before_any_job(start_client):
    client = await start_client(processing={"workers": 2})
    pids = await image_process_pids(client.app[WORKERS], 2)
    assert len(set(pids)) == 2


async def test_image_processes_run_at_a_lower_priority_than_the_server(start_client):
    client = await start_client(processing={"workers": 1})
    [pid] = await image_process_pids(client.app[WORKERS], 1)
    expected = min(os.nice(0) + IMAGE_PROCESS_NICENESS, 19)
    deadline = time.monotonic() + 30
    while niceness(pid) != expected and time.monotonic() < deadline:  # the child renices itself as it starts
        await asyncio.sleep(0.05)
    assert niceness(pid) == expected
