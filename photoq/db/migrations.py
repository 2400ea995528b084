"""The schema and its numbered migrations (PRAGMA user_version)."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

SCHEMA_VERSION_BASE = 1
# Numbered migrations: MIGRATIONS[0] takes a database from version 1 to 2, and so on. Never edit one that has
# shipped; add a new one and update schema.sql to match the result.
MIGRATIONS: tuple[str, ...] = (
    # 1 -> 2: the ThumbHash placeholder of a photo, written by its thumbnail job.
    "ALTER TABLE photos ADD COLUMN thumbhash TEXT",
    # 2 -> 3: outputs remember what they were rendered with, so `photoq reprocess` can tell a stale output from a
    # fresh one and files are found in the format they were written in; a job may render only some outputs.
    (
        "ALTER TABLE outputs ADD COLUMN format TEXT; ALTER TABLE outputs ADD COLUMN spec TEXT; "
        "ALTER TABLE jobs ADD COLUMN outputs TEXT"
    ),
)
SCHEMA_VERSION = SCHEMA_VERSION_BASE + len(MIGRATIONS)


def schema_sql() -> str:
    packaged = resources.files("photoq").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent.parent / "schema.sql").read_text(encoding="utf-8")


def migrate_sqlite(conn: sqlite3.Connection, path: Path) -> None:
    """Bring a SQLite database to SCHEMA_VERSION: a new one gets schema.sql, an older one each migration in turn,
    each in its own transaction with the version it reaches."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database {path} has schema version {version}, newer than this photoq knows ({SCHEMA_VERSION})"
        )
    if version == 0:
        conn.executescript(f"BEGIN IMMEDIATE; {schema_sql()}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        return
    for number in range(version, SCHEMA_VERSION):
        sql = MIGRATIONS[number - SCHEMA_VERSION_BASE]
        conn.executescript(f"BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {number + 1}; COMMIT;")
