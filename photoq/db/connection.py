"""The SQLite backend's connections: the writer (a thread photoq owns) and one reader, opened and migrated."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from .migrations import IdFloors, migrate_sqlite
from .store import Store
from .writer import BUSY_TIMEOUT_MS, SQLiteWriter, Transaction


class SQLiteConnection(Store):
    """Connections and the helpers every part of the SQLite backend shares."""

    def __init__(
        self, path: Path, id_floors: Callable[[], IdFloors] | None = None, clock: Callable[[], float] = time.monotonic
    ):
        """`id_floors` tells a migration that starts counting ids for good which ids were handed out already
        (Storage.highest_ids_on_disk); called only when such a migration runs."""
        self.path = Path(path)
        self._id_floors = id_floors
        self.writer = SQLiteWriter(self.path, clock)
        self._reader: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self.writer.start()
        try:
            await self.writer.run(lambda conn: migrate_sqlite(conn, self.path, self._id_floors))
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            self._reader.row_factory = sqlite3.Row
            await self._reader.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        await self.writer.stop()

    async def schema_version(self) -> int:
        return int(await self._read_scalar("PRAGMA user_version"))

    # -- reads: one hop each -----------------------------------------------------------------------------------
    # One hop to the reader's thread per statement: a statement left open between hops would keep a read
    # transaction open, and another coroutine's read on the same connection would see a snapshot older than its
    # own start.

    async def _read_all(self, sql: str, params: Sequence = ()) -> list[sqlite3.Row]:
        if self._reader is None:
            raise RuntimeError(f"database {self.path} is not open")
        return list(await self._reader.execute_fetchall(sql, params))

    async def _read_one(self, sql: str, params: Sequence = ()) -> sqlite3.Row | None:
        rows = await self._read_all(sql, params)
        return rows[0] if rows else None

    async def _read_scalar(self, sql: str, params: Sequence = ()) -> Any:
        row = await self._read_one(sql, params)
        return None if row is None else row[0]

    # -- helpers inside a write transaction --------------------------------------------------------------------

    @staticmethod
    async def _sha256_referenced(tx: Transaction, sha256: str) -> bool:
        return bool(await tx.scalar(
            "SELECT EXISTS(SELECT 1 FROM photos WHERE sha256 = ?) OR EXISTS(SELECT 1 FROM staged_files WHERE sha256 = ?)",
            (sha256, sha256),
        ))
