"""The event bridge between nodes on PostgreSQL: NOTIFY to send, LISTEN on a dedicated connection to receive.

One connection of its own (never one of the store's pool: a pooled connection's LISTEN would end with its checkout),
reconnected with backoff when it is lost; messages sent meanwhile are lost, and the receiver is told it reconnected
so it can recount what it shows. NOTIFY is delivered when the sending transaction commits (here: at once, autocommit)
to every session listening on the channel, the sender's own included.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence

import asyncpg

from .availability import database_unavailable
from .store import EventBridge, OnMessage

log = logging.getLogger(__name__)

CHANNEL = "photoq_events"
CONNECT_TIMEOUT_SECONDS = 5.0
PROBE_SECONDS = 5.0  # a silent connection is checked this often (a lost one is noticed only on I/O)
RECONNECT_MAX_SECONDS = 5.0


class PostgresEventBridge(EventBridge):
    def __init__(self, dsn: str, channel: str = CHANNEL):
        self.dsn = dsn
        self.channel = channel
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._connected = asyncio.Event()
        self._send_lock = asyncio.Lock()

    async def start(self, on_message: OnMessage, on_reconnect: Callable[[], None]) -> None:
        self._on_message = on_message
        self._on_reconnect = on_reconnect
        self._task = asyncio.create_task(self._listen_forever(), name="photoq-bridge-listen")
        # The first connection is made before start-up goes on, so nothing this node publishes early is lost;
        # a database that is down now is the store's start-up error to report, not ours.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), CONNECT_TIMEOUT_SECONDS)

    async def send(self, payloads: Sequence[str]) -> None:
        conn = self._conn
        if conn is None or conn.is_closed():
            return  # lost meanwhile; the listeners recount after their own reconnection
        async with self._send_lock:
            await conn.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS m(p, n) ORDER BY n",
                               self.channel, list(payloads))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._disconnect()

    async def _listen_forever(self) -> None:
        delay = 0.2
        first = True
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT_SECONDS)
                conn.add_termination_listener(functools.partial(_set_event, lost))
                await conn.add_listener(self.channel, self._notified)
                self._conn = conn
                self._connected.set()
                if not first:
                    log.info("the live-event bridge to the other nodes is back")
                    self._on_reconnect()
                delay = 0.2
                while not lost.is_set():
                    try:
                        await asyncio.wait_for(lost.wait(), PROBE_SECONDS)
                    except TimeoutError:
                        async with self._send_lock:
                            await conn.fetchval("SELECT 1", timeout=PROBE_SECONDS)
                log.warning("the live-event bridge to the other nodes lost its connection; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not database_unavailable(exc) and not isinstance(exc, (OSError, TimeoutError)):
                    log.exception("the live-event bridge failed")
                elif self._connected.is_set() or first:
                    log.warning("the live-event bridge to the other nodes is down (%s); reconnecting", exc)
            finally:
                first = False
                self._connected.clear()
                await self._disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            self._on_message(str(payload))
        except Exception:  # one bad message must not end the listener
            log.exception("could not handle a message from another node")

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            if not conn.is_closed():
                conn.terminate()


def _set_event(event: asyncio.Event, _conn: object) -> None:
    event.set()
