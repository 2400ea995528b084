"""A slow-headers flood, run in its own process by the tests (so that it does not slow the test's own probes):
`python -m tests.flood PORT SECONDS CONNECTIONS` keeps CONNECTIONS half-sent requests open for SECONDS, opening a
new one half a second after the server closes one; prints its counts as JSON."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

PARTIAL_REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n"


async def attacker(port: int, until_time: float, stats: dict) -> None:
    while time.monotonic() < until_time:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["connect_failed"] += 1
            await asyncio.sleep(0.5)
            continue
        stats["open"] += 1
        stats["peak"] = max(stats["peak"], stats["open"])
        try:
            writer.write(PARTIAL_REQUEST)
            await writer.drain()
            await asyncio.wait_for(reader.read(1), max(0.01, until_time - time.monotonic()))
            stats["closed_by_server"] += 1
        except (TimeoutError, OSError):
            pass
        finally:
            stats["open"] -= 1
            writer.close()
        await asyncio.sleep(0.5)


async def flood(port: int, seconds: float, connections: int) -> dict:
    stats = {"open": 0, "peak": 0, "closed_by_server": 0, "connect_failed": 0}
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(attacker(port, deadline, stats) for _ in range(connections)))
    return stats


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port, seconds, count = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(flood(port, seconds, count))))
