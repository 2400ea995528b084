"""Schema migrations: an old database is taken forward in place and keeps its rows."""

from __future__ import annotations

import re
import sqlite3

from photoq.db import MIGRATIONS, SCHEMA_VERSION_BASE, Database, schema_sql


def version_1_schema() -> str:
    """schema.sql as it was at version 1: without photos.thumbhash (added by MIGRATIONS[0])."""
    sql, count = re.subn(r"\n\s*thumbhash\s+TEXT,[^\n]*", "", version_2_schema())
    assert count == 1
    return sql


def version_3_schema() -> str:
    """schema.sql as it was at version 3: no trash or cover columns, ids without AUTOINCREMENT, one photo per
    content in an album (MIGRATIONS[2])."""
    sql = schema_sql()
    sql, count = re.subn(r"\n\s*(deleted_at|cover_photo_id|trashed_with_album)\s[^\n]*\(v4\)", "", sql)
    assert count == 4
    sql = re.sub(r",(\s*\n\);)", r"\1", sql)  # the albums table's last column lost its follower
    sql = sql.replace("thumbhash          TEXT,", "thumbhash          TEXT,\n    UNIQUE (album_id, sha256)")
    sql, count = re.subn(r"\nCREATE (UNIQUE )?INDEX photos_(live_content|trashed)[^\n]*", "", sql)
    assert count == 2
    return sql.replace(" AUTOINCREMENT", "")


def version_2_schema() -> str:
    """schema.sql as it was at version 2: without outputs.format, outputs.spec and jobs.outputs (MIGRATIONS[1])."""
    sql, count = re.subn(r"\n\s*(format|spec|outputs)\s+TEXT,\s*--[^\n]*\(v3\)", "", version_3_schema())
    assert count == 3
    return sql


def old_database(path, schema: str, version: int, *inserts: str) -> None:
    """A database as an older photoq left it: that version's schema and user_version, album 1 and `inserts`."""
    conn = sqlite3.connect(path)
    conn.executescript(schema)
    conn.execute("INSERT INTO albums (id, name, created_at) VALUES (1, 'Old', 1.0)")
    for sql in inserts:
        conn.execute(sql)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


async def test_a_version_1_database_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "photoq.db"
    old_database(
        path, version_1_schema(), 1,
        """INSERT INTO photos (id, album_id, filename, sha256, size_bytes, width, height, format, content_type,
                               thumbnail_status, variant_status, created_at)
           VALUES (7, 1, 'old.jpg', 'ab', 10, 4, 3, 'jpeg', 'image/jpeg', 'complete', 'complete', 2.0)""",
    )

    db = Database(path)
    await db.open()
    try:
        assert await db.schema_version() == SCHEMA_VERSION_BASE + len(MIGRATIONS) == 4
        photo = await db.get_photo(7)
        assert photo is not None and photo.filename == "old.jpg" and photo.thumbhash is None
        assert str(photo.processing_status) == "complete"
        assert (await db.get_album(1)).name == "Old"
    finally:
        await db.close()

    assert_same_columns_as_a_new_database(path)


async def test_a_version_2_database_is_migrated_and_keeps_its_outputs_and_jobs(tmp_path):
    path = tmp_path / "photoq.db"
    old_database(
        path, version_2_schema(), 2,
        """INSERT INTO photos (id, album_id, filename, sha256, size_bytes, width, height, format, content_type,
                               thumbnail_status, variant_status, created_at, thumbhash)
           VALUES (7, 1, 'old.jpg', 'ab', 10, 400, 300, 'jpeg', 'image/jpeg', 'complete', 'pending', 2.0, 'aGFzaA==')""",
        "INSERT INTO outputs (photo_id, name, width, height, size_bytes, created_at) "
        "VALUES (7, 'thumb-150', 150, 113, 999, 3.0)",
        "INSERT INTO jobs (photo_id, kind, priority, status, max_attempts, run_at, created_at, updated_at) "
        "VALUES (7, 'variant', 10, 'pending', 3, 4.0, 4.0, 4.0)",
    )

    db = Database(path)
    await db.open()
    try:
        assert await db.schema_version() == 4
        photo = await db.get_photo(7)
        assert photo.thumbhash == "aGFzaA==" and str(photo.processing_status) == "processing"
        # An old output row does not know what rendered it; it is still served and counted.
        (output,) = (await db.photo_outputs(7)).values()
        assert (output.name, output.width, output.height, output.size_bytes) == ("thumb-150", 150, 113, 999)
        assert output.format is None and output.spec is None
        # An old job renders every output of its kind.
        (job,) = await db.list_jobs(None, 10)
        assert job.photo_id == 7 and str(job.kind) == "variant" and job.outputs is None
    finally:
        await db.close()
    assert_same_columns_as_a_new_database(path)


def assert_same_columns_as_a_new_database(path) -> None:
    """The migrated tables have the same columns, in the same order, as a new database's."""
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(schema_sql())
    migrated = sqlite3.connect(path)
    for table in ("albums", "photos", "outputs", "jobs"):
        assert columns(migrated, table) == columns(fresh, table), table


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_xinfo({table})")]


async def test_a_version_3_database_gets_the_trash_and_ids_that_are_never_given_again(tmp_path):
    path = tmp_path / "photoq.db"
    old_database(
        path, version_3_schema(), 3,
        """INSERT INTO photos (id, album_id, filename, sha256, size_bytes, width, height, format, content_type,
                               thumbnail_status, variant_status, created_at)
           VALUES (7, 1, 'old.jpg', 'ab', 10, 400, 300, 'jpeg', 'image/jpeg', 'complete', 'pending', 2.0)""",
        "INSERT INTO outputs (photo_id, name, width, height, size_bytes, created_at, format, spec) "
        "VALUES (7, 'thumb-150', 150, 113, 999, 3.0, 'webp', 'webp 150')",
        "INSERT INTO jobs (id, photo_id, kind, priority, status, max_attempts, run_at, created_at, updated_at) "
        "VALUES (30, 7, 'variant', 10, 'pending', 3, 4.0, 4.0, 4.0)",
        "INSERT INTO job_attempts (photo_id, job_id, kind, attempt, started_at) VALUES (7, 30, 'variant', 1, 5.0)",
    )
    db = Database(path)
    await db.open()
    try:
        assert await db.schema_version() == 4
        photo = await db.get_photo(7)
        assert photo.filename == "old.jpg" and photo.attempts == 1  # its history came along
        assert list(await db.photo_outputs(7)) == ["thumb-150"]
        (job,) = await db.list_jobs(None, 10)
        assert (job.id, job.photo_id) == (30, 7)
    finally:
        await db.close()
    assert_same_columns_as_a_new_database(path)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = ON")
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    # The newest album, photo and job deleted: their ids are not given again.
    conn.execute("DELETE FROM albums WHERE id = 1")
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0  # the cascade still works
    assert conn.execute("INSERT INTO albums (name, created_at) VALUES ('New', 9.0) RETURNING id").fetchone()[0] == 2
    conn.close()
