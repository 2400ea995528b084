"""This node's place among the photoq nodes that share one database (cluster mode), and the chores any node does.

- The nodes registry: a random id per start, and a heartbeat row (host, port, role, workers, busy, measured
  capacity) written every HEARTBEAT_SECONDS. A node not heard of for SILENT_AFTER_SECONDS is shown as silent;
  after FORGET_AFTER_SECONDS its row is removed by whichever node looks first.
- Expired leases of any node are taken back every [queue] sweep_interval_seconds (a dead node's jobs run again
  within about lease_seconds), and the cluster-wide pause switch is read again with every heartbeat.
- The event bridge (PostgreSQL LISTEN/NOTIFY, see db/pg_events.py): what the queue publishes here is sent to the
  other nodes, and what they send reaches this node's SSE subscribers and wakes its idle workers.

With SQLite there is one node and no bridge; the registry still lists it, and the chores run the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from .config import Settings
from .db import EventBridge, Store, database_unavailable
from .events import Broadcaster
from .models import Node, iso
from .queue import JobQueue

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 2.0
SILENT_AFTER_SECONDS = 10.0  # five missed heartbeats: shown as silent
FORGET_AFTER_SECONDS = 60.0  # then dropped from the registry


def heartbeat_interval(settings: Settings) -> float:
    # Several heartbeats per lease, so a node's capacity and pause state are never older than a fraction of it.
    return min(HEARTBEAT_SECONDS, settings.queue.lease_seconds / 4)


class ClusterNode:
    def __init__(self, db: Store, queue: JobQueue, events: Broadcaster, settings: Settings,
                 busy: Callable[[], int], workers: int, clock: Callable[[], float] = time.time):
        self.db = db
        self.queue = queue
        self.events = events
        self.settings = settings
        self.clock = clock
        self.id = secrets.token_hex(8)
        self.host = socket.gethostname()
        self.role = settings.server.role
        self.workers = workers
        self._busy = busy
        self.started_at = clock()
        self.bridge: EventBridge | None = db.event_bridge()
        self._tasks: list[asyncio.Task] = []
        self._outbox: asyncio.Queue[str] = asyncio.Queue()
        self._database_down = False

    # -- start and stop ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self._heartbeat()
        if self.bridge is not None:
            await self.bridge.start(self._received, self._reconnected)
            self.events.relay = self._relay
            self._tasks.append(asyncio.create_task(self._send_forever(), name="photoq-bridge-send"))
        self._tasks.append(asyncio.create_task(self._heartbeat_forever(), name="photoq-heartbeat"))
        self._tasks.append(asyncio.create_task(self._sweep_forever(), name="photoq-lease-sweep"))
        log.info("node %s (%s, role %s, %d worker(s)) joined%s", self.id, self.host, self.role, self.workers,
                 " the cluster" if self.bridge is not None else "")

    async def stop(self) -> None:
        self.events.relay = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.bridge is not None:
            await self.bridge.close()
        with contextlib.suppress(Exception):  # the database may be gone; the row is then dropped as silent
            await self.db.forget_node(self.id)

    # -- the registry ------------------------------------------------------------------------------------------

    def row(self) -> Node:
        capacity = self.queue.throughput.capacity() if self.workers else None
        return Node(id=self.id, host=self.host, port=self.settings.server.port, role=self.role, workers=self.workers,
                    busy=self._busy(), capacity=json.dumps(capacity) if capacity else None,
                    started_at=self.started_at, last_seen=self.clock())

    async def _heartbeat(self) -> None:
        now = self.clock()
        await self.db.heartbeat_node(self.row())
        await self.db.forget_silent_nodes(now - FORGET_AFTER_SECONDS)
        peers = []
        for node in await self.db.list_nodes():
            if node.id != self.id and node.capacity and now - node.last_seen <= SILENT_AFTER_SECONDS:
                with contextlib.suppress(ValueError):
                    peers.append(json.loads(node.capacity))
        self.queue.peer_capacities = peers
        await self.queue.refresh_paused()

    async def _heartbeat_forever(self) -> None:
        interval = heartbeat_interval(self.settings)
        while True:
            await asyncio.sleep(interval)
            await self._chore(self._heartbeat, "write this node's heartbeat")

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.queue.sweep_interval_seconds)
            await self._chore(self.queue.sweep_expired_leases, "take back expired job leases")

    async def _chore(self, action: Callable[[], Any], what: str) -> None:
        """Run a periodic chore; an unreachable database is logged once per outage, not once per beat."""
        try:
            await action()
        except Exception as exc:
            if not database_unavailable(exc):
                log.exception("could not %s", what)
            elif not self._database_down:
                log.error("the database cannot be reached (%s); retrying", exc)
            self._database_down = database_unavailable(exc)
            return
        if self._database_down:
            log.info("the database answers again")
            self._database_down = False
            self.events.stats_changed(relay=False)
            self.queue.wake()

    async def nodes(self) -> list[dict]:
        """The registry as GET /api/admin/queue shows it: live nodes, and silent ones until they are dropped."""
        now = self.clock()
        shown = []
        for node in await self.db.list_nodes():
            if now - node.last_seen > FORGET_AFTER_SECONDS:
                continue
            shown.append({
                "id": node.id, "host": node.host, "port": node.port, "role": node.role, "workers": node.workers,
                "busy": node.busy, "last_seen": iso(node.last_seen), "started_at": iso(node.started_at),
                "state": "live" if now - node.last_seen <= SILENT_AFTER_SECONDS else "silent",
                "this_node": node.id == self.id,
            })
        return shown

    # -- the event bridge --------------------------------------------------------------------------------------

    def _relay(self, kind: str, data: Any) -> None:
        """Hand a change published here to the other nodes (queued; the sender task writes it)."""
        for payload in encode(self.id, kind, data):
            self._outbox.put_nowait(payload)

    async def _send_forever(self) -> None:
        assert self.bridge is not None
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 100:
                batch.append(self._outbox.get_nowait())
            try:
                await self.bridge.send(batch)
            except Exception as exc:  # the database is gone: live events meanwhile are lost, stats catch up after
                if not database_unavailable(exc):
                    log.exception("could not send live events to the other nodes")

    def _received(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            sender, kind, data = message["n"], message["k"], message["d"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message from another node")
            return
        if sender == self.id:
            return
        if kind == "photo":
            self.events.publish_photos(data, relay=False)
            self.queue.wake()
        elif kind == "stats":
            self.events.stats_changed(data, relay=False)
            self.queue.wake()
        elif kind == "queue":  # pause, resume, retry, clearing: read the shared switch, tell our own pages
            self._tasks.append(asyncio.create_task(self._chore(self.queue.refresh_paused, "read the pause switch")))
            self._tasks = [t for t in self._tasks if not t.done()]
            self.queue.wake()
        else:
            self.events.publish_to_all(kind, data, relay=False)

    def _reconnected(self) -> None:
        """Messages may have been missed while the bridge was down: recount every stat, look for work again."""
        self.events.stats_changed(relay=False)
        self.queue.wake()


def encode(sender: str, kind: str, data: Any) -> list[str]:
    """One change as bridge messages under the payload limit: a long list of photos is split across several; a
    single photo too big to send (a very long error) becomes a stats change of its album, which is never lost."""
    limit = EventBridge.MAX_PAYLOAD_BYTES

    def message(k: str, d: Any) -> str:
        return json.dumps({"n": sender, "k": k, "d": d}, separators=(",", ":"))

    whole = message(kind, data)
    if len(whole.encode()) <= limit:
        return [whole]
    if kind != "photo":
        return [message("stats", [None])]
    payloads: list[str] = []
    chunk: list[dict] = []
    overhead = len(message(kind, []).encode())
    size = overhead
    for item in data:
        item_size = len(json.dumps(item, separators=(",", ":")).encode()) + 1  # and its comma
        if overhead + item_size > limit:
            payloads.append(message("stats", [item.get("album_id"), None]))
            continue
        if chunk and size + item_size > limit:
            payloads.append(message(kind, chunk))
            chunk, size = [], overhead
        chunk.append(item)
        size += item_size
    if chunk:
        payloads.append(message(kind, chunk))
    return payloads
