"""In-process publish/subscribe for live progress: per-photo events as they happen, queue stats coalesced.

Knows nothing of the database or HTTP: the stats are computed by a function handed in at construction.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)

STATS_INTERVAL_SECONDS = 0.25  # at most ~4 stats events per second per subscriber
SUBSCRIBER_BUFFER = 1000


@dataclass(frozen=True)
class Event:
    id: int
    name: str
    data: dict


class Subscriber:
    """One listener (an SSE connection). `album_id` None means every album."""

    def __init__(self, album_id: int | None):
        self.album_id = album_id
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(SUBSCRIBER_BUFFER)
        self.last_stats: dict | None = None
        self.initial_event_id = 0
        self.closed = False

    def wants(self, album_id: int | None) -> bool:
        return self.album_id is None or self.album_id == album_id

    def offer(self, event: Event) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A client too slow to keep up is dropped; on reconnect it gets fresh stats.
            log.warning("dropping a live-progress subscriber that fell %d events behind", SUBSCRIBER_BUFFER)
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def next(self, timeout: float) -> Event | None:
        """The next event; None when closed. Raises TimeoutError when nothing came within `timeout`."""
        return await asyncio.wait_for(self.queue.get(), timeout)


def _unfinished(stats: dict | None) -> bool:
    """An album with work left follows every change: its eta_seconds counts the other albums' jobs ahead of it."""
    return bool(stats and (stats.get("pending") or stats.get("processing")))


class Broadcaster:
    def __init__(self, compute_stats: Callable[[int | None], Awaitable[dict]],
                 interval: float = STATS_INTERVAL_SECONDS):
        self._compute_stats = compute_stats
        self._interval = interval
        self._subscribers: set[Subscriber] = set()
        self._ids = itertools.count(1)
        self._dirty_albums: set[int | None] = set()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task | None = None

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def next_id(self) -> int:
        return next(self._ids)

    def subscribe(self, album_id: int | None) -> Subscriber:
        subscriber = Subscriber(album_id)
        # Reserved now, so the initial stats event numbers below any event queued while it is computed.
        subscriber.initial_event_id = self.next_id()
        self._subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        subscriber.close()

    async def initial_stats(self, subscriber: Subscriber) -> Event:
        stats = await self._compute_stats(subscriber.album_id)
        subscriber.last_stats = stats
        return Event(subscriber.initial_event_id, "stats", stats)

    def publish_photos(self, states: Iterable[dict]) -> None:
        """Send `photo` events (dicts with at least id and album_id) and mark their albums' stats stale."""
        for data in states:
            event = Event(self.next_id(), "photo", data)
            for subscriber in list(self._subscribers):
                if subscriber.wants(data["album_id"]):
                    subscriber.offer(event)
            self.stats_changed([data["album_id"]])

    def publish_to_all(self, name: str, data: dict) -> None:
        """An event for every subscriber, whatever album it follows (e.g. `queue`: paused, breaker)."""
        event = Event(self.next_id(), name, data)
        for subscriber in list(self._subscribers):
            subscriber.offer(event)

    def stats_changed(self, album_ids: Iterable[int | None] = (None,)) -> None:
        self._dirty_albums.update(album_ids)
        self._dirty.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._publish_stats_forever(), name="photoq-stats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for subscriber in list(self._subscribers):
            self.unsubscribe(subscriber)

    async def _publish_stats_forever(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            dirty, self._dirty_albums = self._dirty_albums, set()
            sent = True
            try:
                sent = await self._publish_stats(dirty)
            except Exception:  # a failed stats query must not end live progress for good
                log.exception("could not publish queue stats")
            # A look that changed nothing (a pause with nothing queued, eta_seconds within its rounding) does not
            # hold back the next change for the whole interval.
            await asyncio.sleep(self._interval if sent else self._interval / 10)

    async def _publish_stats(self, dirty: set[int | None]) -> bool:
        """Send changed stats to the subscribers concerned; True when any event went out."""
        by_filter: dict[int | None, list[Subscriber]] = {}
        for subscriber in self._subscribers:
            if subscriber.album_id is None or subscriber.album_id in dirty or None in dirty or _unfinished(
                    subscriber.last_stats):
                by_filter.setdefault(subscriber.album_id, []).append(subscriber)
        sent = False
        for album_id, subscribers in by_filter.items():
            stats = await self._compute_stats(album_id)
            event = None
            for subscriber in subscribers:
                if subscriber.last_stats != stats:
                    subscriber.last_stats = stats
                    event = event or Event(self.next_id(), "stats", stats)
                    subscriber.offer(event)
            sent = sent or event is not None
        return sent
