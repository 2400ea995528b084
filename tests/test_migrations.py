"""Schema migrations: an old database is taken forward in place and keeps its rows."""

from __future__ import annotations

import re
import sqlite3

from photoq.db import MIGRATIONS, SCHEMA_VERSION_BASE, Database, schema_sql


def version_1_schema() -> str:
    """schema.sql as it was at version 1: without photos.thumbhash (added by MIGRATIONS[0])."""
    sql, count = re.subn(r"\n\s*thumbhash\s+TEXT,[^\n]*", "", schema_sql())
    assert count == 1
    return sql


async def test_a_version_1_database_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "photoq.db"
    conn = sqlite3.connect(path)
    conn.executescript(version_1_schema())
    conn.execute("INSERT INTO albums (id, name, created_at) VALUES (1, 'Old', 1.0)")
    conn.execute(
        """INSERT INTO photos (id, album_id, filename, sha256, size_bytes, width, height, format, content_type,
                               thumbnail_status, variant_status, created_at)
           VALUES (7, 1, 'old.jpg', 'ab', 10, 4, 3, 'jpeg', 'image/jpeg', 'complete', 'complete', 2.0)"""
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    db = Database(path)
    await db.open()
    try:
        assert await db._scalar(db._writer, "PRAGMA user_version") == SCHEMA_VERSION_BASE + len(MIGRATIONS) == 2
        photo = await db.get_photo(7)
        assert photo is not None and photo.filename == "old.jpg" and photo.thumbhash is None
        assert str(photo.processing_status) == "complete"
        assert (await db.get_album(1)).name == "Old"
    finally:
        await db.close()

    # The migrated table has the same columns, in the same order, as a new database's.
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(schema_sql())
    migrated = sqlite3.connect(path)
    assert columns(migrated) == columns(fresh)


def columns(conn: sqlite3.Connection) -> list[str]:
    return [row[1] for row in conn.execute("PRAGMA table_xinfo(photos)")]
