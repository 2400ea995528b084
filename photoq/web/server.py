"""Run the application as `photoq serve` does: aiohttp's runner with guarded connections (see connections.py),
a short keep-alive, accept() errors logged once per burst, and a graceful stop on SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from aiohttp import web

from ..config import Settings
from .connections import AcceptErrorThrottle, ConnectionGuard, ConnectionLimits, GuardedSite, usable_connection_limit

log = logging.getLogger("photoq")


def run(app: web.Application, settings: Settings, access_log_class: Any) -> None:
    asyncio.run(_serve(app, settings, access_log_class))


async def _serve(app: web.Application, settings: Settings, access_log_class: Any) -> None:
    loop = asyncio.get_running_loop()
    AcceptErrorThrottle().install(loop)  # for any server asyncio itself runs
    server = settings.server
    limits = ConnectionLimits(
        max_connections=usable_connection_limit(server.max_connections),
        header_timeout=server.header_timeout_seconds,
        body_timeout=server.body_timeout_seconds,
        body_min_rate=server.body_min_bytes_per_second,
    )
    handler_args: dict[str, Any] = {"access_log_class": access_log_class, "keepalive_timeout": server.keepalive_seconds}
    runner = web.AppRunner(app, handle_signals=False,
                           shutdown_timeout=settings.processing.shutdown_grace_seconds + 5, **handler_args)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    guard = ConnectionGuard(limits)
    await runner.setup()
    try:
        await GuardedSite(runner, server.host, server.port, guard, handler_args).start()
        guard.start()
        log.debug("at most %d connections", limits.max_connections)
        await stop.wait()
        log.info("stopping")
    finally:
        await guard.stop()
        await runner.cleanup()
