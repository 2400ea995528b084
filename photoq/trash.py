"""The trash: deleting an album or a photo puts it here for RETENTION_DAYS, then a periodic sweep purges it.

For API clients a trashed album or photo is gone at once (404, in no listing, its jobs deleted), as the contract
says of a deletion; its files stay until the purge, so that restoring it brings everything back. "Empty now" and
"delete forever" purge at once. Purging removes the rows and then every file no other row references (the
originals are shared by content between albums).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .db import Store
from .events import Broadcaster
from .storage import Storage

log = logging.getLogger("photoq.trash")

RETENTION_DAYS = 30
SWEEP_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True)
class Purged:
    albums: int
    photos: int


class Trash:
    def __init__(self, db: Store, storage: Storage, events: Broadcaster, max_attempts: int,
                 clock: Callable[[], float] = time.time, retention_days: float = RETENTION_DAYS):
        self.db = db
        self.storage = storage
        self.events = events
        self.max_attempts = max_attempts
        self.clock = clock
        self.retention_seconds = retention_days * 86400

    # -- in -----------------------------------------------------------------------------------------------------

    async def trash_album(self, album_id: int) -> bool:
        found = await self.db.trash_album(album_id, self.clock())
        if found:
            self.events.stats_changed([None, album_id])
        return found

    async def trash_photos(self, photo_ids: Sequence[int]) -> list[tuple[int, int]]:
        done = await self.db.trash_photos(photo_ids, self.clock())
        if done:
            self.events.stats_changed([None, *{album for _, album in done}])
        return done

    # -- out ----------------------------------------------------------------------------------------------------

    async def restore_album(self, album_id: int) -> bool:
        found = await self.db.restore_album(album_id, self.clock(), self.max_attempts)
        if found:
            self.events.stats_changed([None, album_id])
        return found

    async def restore_photo(self, photo_id: int) -> tuple[str, int | None]:
        outcome, other = await self.db.restore_photo(photo_id, self.clock(), self.max_attempts)
        if outcome == "restored":
            self.events.stats_changed([None, other])
        return outcome, other

    # -- for good -----------------------------------------------------------------------------------------------

    async def purge_album(self, album_id: int) -> bool:
        if not await self.db.album_in_trash(album_id):
            return False
        return await self.db.delete_album(album_id, self.storage.remove_photo_files)

    async def purge_photo(self, photo_id: int) -> bool:
        if await self.db.trashed_photo_album(photo_id) is None:
            return False
        return await self.db.delete_photo(photo_id, self.storage.remove_photo_files)

    async def purge(self, before: float | None) -> Purged:
        """Purge what has been in the trash since before `before`; None: everything ("empty now")."""
        album_ids, photo_ids = await self.db.trash_older_than(before)
        albums = sum([await self.db.delete_album(a, self.storage.remove_photo_files) for a in album_ids])
        photos = sum([await self.db.delete_photo(p, self.storage.remove_photo_files) for p in photo_ids])
        return Purged(albums, photos)

    async def empty(self) -> Purged:
        return await self.purge(None)

    async def sweep(self) -> Purged:
        """Purge what has been in the trash longer than the retention."""
        return await self.purge(self.clock() - self.retention_seconds)

    async def sweep_periodically(self, interval: float = SWEEP_INTERVAL_SECONDS) -> None:
        while True:
            try:
                purged = await self.sweep()
            except Exception:  # the database busy or gone for a moment: the next sweep tries again
                log.exception("trash: the sweep failed")
            else:
                if purged.albums or purged.photos:
                    log.info("trash: purged %d album(s) and %d photo(s) older than %d days",
                             purged.albums, purged.photos, self.retention_seconds // 86400)
            await asyncio.sleep(interval)
