"""Whether an error means the database cannot be reached (as opposed to a bad statement or a full disk).

Callers treat such an error as an outage, not a fault of the request or the job: the API answers 503 with
Retry-After, workers hold their claims back (the breaker), and everything resumes by itself once the database
answers again.
"""

from __future__ import annotations

import sqlite3


class DatabaseUnavailable(Exception):
    """A backend's way of saying the database cannot be reached right now."""


# SQLite: the file cannot be opened or read (a storage mount gone away), or another process holds it locked past the
# busy timeout.
_SQLITE_OUTAGE_CODES = {
    getattr(sqlite3, name) for name in ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR")
    if hasattr(sqlite3, name)
}


def database_unavailable(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) says the database is unreachable, restarting or shutting down."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_outage(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_outage(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnavailable):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF) in _SQLITE_OUTAGE_CODES
    if isinstance(exc, ConnectionRefusedError):  # no server on the database's port (a client never causes this one)
        return True
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency; without it there is no PostgreSQL either
        return False
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
                        asyncpg.exceptions.AdminShutdownError, asyncpg.exceptions.CrashShutdownError,
                        asyncpg.exceptions.ConnectionFailureError)):
        return True
    if isinstance(exc, asyncpg.InterfaceError):  # "connection is closed", "pool is closing" and the like
        return "closed" in str(exc) or "closing" in str(exc)
    return False
