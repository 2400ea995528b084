"""The SQLite backend's web sessions and one-time login codes (photoq.sessions holds the rules; only SHA-256
hashes of ids and codes reach the database)."""

from __future__ import annotations

import sqlite3

from .connection import SQLiteConnection


class SQLiteSessions(SQLiteConnection):
    async def insert_session(self, id_hash: str, now: float, expires_at: float) -> None:
        await self.writer.execute_write_fn(lambda conn: conn.execute(
            "INSERT INTO sessions (id_hash, created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?)",
            (id_hash, now, now, expires_at)).close())

    async def get_session(self, id_hash: str) -> tuple[float, float, float] | None:
        row = await self._read_one("SELECT created_at, last_seen_at, expires_at FROM sessions WHERE id_hash = ?",
                                   (id_hash,))
        return (row["created_at"], row["last_seen_at"], row["expires_at"]) if row else None

    async def touch_session(self, id_hash: str, now: float, expires_at: float) -> None:
        await self.writer.execute_write_fn(lambda conn: conn.execute(
            "UPDATE sessions SET last_seen_at = ?, expires_at = ? WHERE id_hash = ?",
            (now, expires_at, id_hash)).close())

    async def delete_session(self, id_hash: str) -> bool:
        return await self.writer.execute_write_fn(
            lambda conn: _deleted(conn, "DELETE FROM sessions WHERE id_hash = ?", (id_hash,)) > 0)

    async def delete_all_sessions(self) -> int:
        return await self.writer.execute_write_fn(lambda conn: _deleted(conn, "DELETE FROM sessions", ()))

    async def insert_login_code(self, code_hash: str, now: float, expires_at: float) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM login_codes WHERE expires_at <= ?", (now,)).close()
            conn.execute("INSERT INTO login_codes (code_hash, created_at, expires_at) VALUES (?, ?, ?)",
                         (code_hash, now, expires_at)).close()

        await self.writer.execute_write_fn(insert)

    async def redeem_login_code(self, code_hash: str, now: float) -> bool:
        def redeem(conn: sqlite3.Connection) -> bool:
            row = conn.execute("DELETE FROM login_codes WHERE code_hash = ? RETURNING expires_at",
                               (code_hash,)).fetchone()
            return row is not None and row[0] > now

        return await self.writer.execute_write_fn(redeem)

    async def delete_expired_sessions_and_codes(self, now: float) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            return (_deleted(conn, "DELETE FROM sessions WHERE expires_at <= ?", (now,))
                    + _deleted(conn, "DELETE FROM login_codes WHERE expires_at <= ?", (now,)))

        return await self.writer.execute_write_fn(prune)


def _deleted(conn: sqlite3.Connection, sql: str, params: tuple) -> int:
    cursor = conn.execute(sql, params)
    try:
        return cursor.rowcount
    finally:
        cursor.close()
