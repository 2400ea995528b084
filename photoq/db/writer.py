"""A SQLite connection on a thread of its own: the one way photoq writes to its SQLite database.

Modelled on datasette's `execute_write_fn`: one thread owns one connection, coroutines hand it functions to run,
and `execute_write_fn(fn)` runs `fn(conn)` inside one BEGIN IMMEDIATE ... COMMIT in a single hop to the thread
(rolled back if `fn` raises). `transaction()` is the multi-hop form, for a transaction that must await something
between its statements (removing files while other writers are held off).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000
# Commits with durable=False (synchronous = NORMAL) become durable only with the next commit that syncs the WAL. So
# that a busy queue with no uploads does not go on for minutes with every completion since the last upload unsynced,
# such a commit is made durable (FULL, which syncs the ones before it too) once this long has passed since a commit
# last synced: a power cut then redoes about the last second of the workers' work, not all of it since an upload.
BOOKKEEPING_SYNC_SECONDS = 1.0


def connect(path: Path) -> sqlite3.Connection:
    """A connection with photoq's pragmas; autocommit (transactions are begun explicitly)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL, not NORMAL: we answer 202 only after the commit, and with NORMAL a commit acknowledged in WAL mode
    # can roll back on a power cut. FULL costs one fsync per transaction, which photoq batches to a handful
    # per photo: noise next to the image work.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def run_in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
    """fn(conn) inside BEGIN IMMEDIATE ... COMMIT, rolled back when it raises.

    `durable=False` commits with synchronous = NORMAL: a power cut may undo the last few such commits. Only for
    records whose loss merely makes a job run again (the workers' claims, leases and results). SQLiteWriter bounds
    "the last few" in time (BOOKKEEPING_SYNC_SECONDS).
    """
    if not durable:
        conn.execute("PRAGMA synchronous = NORMAL")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result
    finally:
        if not durable:
            conn.execute("PRAGMA synchronous = FULL")


_Item = tuple[Callable[[sqlite3.Connection], Any], asyncio.Future, asyncio.AbstractEventLoop]


class Transaction:
    """Statements of one open write transaction; each call is one hop to the writer's thread."""

    def __init__(self, writer: SQLiteWriter):
        self._writer = writer

    async def fetchall(self, sql: str, params: Sequence | dict = ()) -> list[sqlite3.Row]:
        return await self._writer.run(lambda conn: conn.execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence | dict = ()) -> sqlite3.Row | None:
        return await self._writer.run(lambda conn: conn.execute(sql, params).fetchone())

    async def scalar(self, sql: str, params: Sequence | dict = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def execute(self, sql: str, params: Sequence | dict = ()) -> None:
        await self._writer.run(lambda conn: conn.execute(sql, params).close())

    async def executemany(self, sql: str, seq: Iterable[Sequence]) -> None:
        rows = list(seq)
        if rows:
            await self._writer.run(lambda conn: conn.executemany(sql, rows).close())


class SQLiteWriter:
    """The write connection and the thread that owns it. Writes are serialised by an asyncio lock (one writer per
    process) and, between processes, by SQLite's own lock (BEGIN IMMEDIATE waits up to the busy timeout)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self._clock = clock
        self._synced_at = -math.inf  # when a commit last synced the WAL
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name=f"photoq-sqlite-writer:{self.path.name}", daemon=True)
        self._thread.start()
        try:
            await self.run(self._open)
        except BaseException:
            await self.stop()
            raise

    def _open(self, _: sqlite3.Connection | None) -> None:
        self._conn = connect(self.path)

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.to_thread(thread.join)

    def _serve(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                return
            fn, future, loop = item
            try:
                result = fn(self._conn)  # type: ignore[arg-type]  # None only for _open
            except BaseException as exc:
                loop.call_soon_threadsafe(_settle, future, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, future, result, None)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """fn(conn) on the writer's thread, as it is (no transaction of its own)."""
        if self._thread is None:
            raise RuntimeError(f"database {self.path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return await future

    async def execute_write_fn(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """fn(conn) in one transaction, in one hop: committed when it returns, rolled back when it raises."""
        async with self.lock:
            durable = durable or self._clock() - self._synced_at >= BOOKKEEPING_SYNC_SECONDS
            result = await self.run(lambda conn: run_in_transaction(conn, fn, durable))
            if durable:
                self._synced_at = self._clock()
            return result

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """BEGIN IMMEDIATE ... COMMIT around the block, holding the writer's lock; ROLLBACK when the block raises."""
        async with self.lock, self.transaction_locked() as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def transaction_locked(self) -> AsyncIterator[Transaction]:
        """transaction() for a caller that already holds `lock` (to do more after the commit, still holding it)."""
        await self.run(lambda conn: conn.execute("BEGIN IMMEDIATE").close())
        try:
            yield Transaction(self)
        except BaseException:
            await self.run(lambda conn: conn.execute("ROLLBACK").close())
            raise
        await self.run(lambda conn: conn.execute("COMMIT").close())
        self._synced_at = self._clock()


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.done():  # the awaiting coroutine was cancelled; the work itself finished or rolled back
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
