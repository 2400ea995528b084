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


def version_2_schema() -> str:
    """schema.sql as it was at version 2: without outputs.format, outputs.spec and jobs.outputs (MIGRATIONS[1])."""
    sql, count = re.subn(r"\n\s*(format|spec|outputs)\s+TEXT,\s*--[^\n]*\(v3\)", "", version_3_schema())
    assert count == 3
    return sql


def version_7_schema() -> str:
    """schema.sql as it was at version 7: no trash or cover columns, one photo per content (MIGRATIONS[6])."""
    sql, count = re.subn(r"\n\s*(deleted_at|cover_photo_id|trashed_with_album)\s[^\n]*\(v8\)", "", schema_sql())
    assert count == 4
    sql = re.sub(r",(\s*\n\);)", r"\1", sql)  # the albums table's last column lost its followers
    sql, count = re.subn(r"(\n\s*queued_at\s+REAL,[^\n]*)\n\);", r"\1\n    UNIQUE (album_id, sha256)\n);", sql)
    assert count == 1
    sql, count = re.subn(r"\n(--[^\n]*\(v8\)[^\n]*\n)?CREATE (UNIQUE )?INDEX photos_(live_content|trashed)[^\n]*", "", sql)
    assert count == 2
    return sql


def version_3_schema() -> str:
    """schema.sql as it was at version 3: ids without AUTOINCREMENT, no jobs.lease_token, no outputs.source_sha256
    (MIGRATIONS[2]) and no sessions or login_codes tables (MIGRATIONS[3])."""
    sql, count = re.subn(r"\n--[^\n]*\(v5\)[^\n]*\n(?:--[^\n]*\n)*CREATE TABLE (sessions|login_codes) \(.*?\) WITHOUT ROWID;", "",
                         version_5_schema(), flags=re.S)
    assert count == 2
    sql, count = re.subn(r"\n\s*(lease_token|source_sha256)\s+TEXT,\s*--[^\n]*\(v4\)", "", sql)
    assert count == 2
    sql, count = re.subn(r"INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER PRIMARY KEY", sql)
    assert count == 4
    return sql


def version_5_schema() -> str:
    """schema.sql as it was at version 5: without the nodes table (MIGRATIONS[4]) or the album batch."""
    before, marker, _ = version_6_schema().partition("\n-- Cluster mode's nodes registry")
    assert marker
    return before


def version_6_schema() -> str:
    """schema.sql as it was at version 6: without the album batch (MIGRATIONS[5])."""
    sql = version_7_schema()
    sql, count = re.subn(r",\n(\s*--[^\n]*\n)*\s*batch_started_at\s+REAL,\n\s*batch_key\s+TEXT\n", "\n", sql)
    assert count == 1
    sql, count = re.subn(r"\n\s*queued_at\s+REAL,[^\n]*\(v7\)", "", sql)
    assert count == 1
    sql, count = re.subn(r"\nCREATE INDEX photos_by_album_queued[^\n]*", "", sql)
    assert count == 1
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
        assert await db.schema_version() == SCHEMA_VERSION_BASE + len(MIGRATIONS)
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
        assert await db.schema_version() == SCHEMA_VERSION_BASE + len(MIGRATIONS)
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


async def test_a_version_3_database_gets_the_session_tables(tmp_path):
    path = tmp_path / "photoq.db"
    old_database(path, version_3_schema(), 3)
    db = Database(path)
    await db.open()
    try:
        assert await db.schema_version() == SCHEMA_VERSION_BASE + len(MIGRATIONS)
        await db.insert_session("h" * 64, 1.0, 100.0)
        assert await db.get_session("h" * 64) == (1.0, 1.0, 100.0)
        assert (await db.get_album(1)).name == "Old"
    finally:
        await db.close()
    assert_same_columns_as_a_new_database(path)


def assert_same_columns_as_a_new_database(path) -> None:
    """The migrated tables have the same columns, in the same order, as a new database's."""
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(schema_sql())
    migrated = sqlite3.connect(path)
    for table in ("albums", "photos", "outputs", "jobs", "job_attempts", "sessions", "login_codes", "nodes"):
        assert columns(migrated, table) == columns(fresh, table), table


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_xinfo({table})")]


async def test_a_version_3_database_never_hands_out_an_id_it_handed_out_before(tmp_path):
    """The newest rows were deleted before the upgrade: their ids (and the ids of pruned jobs still in the history,
    and of variant folders and resumable uploads on disk) are not handed out again."""
    path = tmp_path / "photoq.db"
    photo = """INSERT INTO photos (id, album_id, filename, sha256, size_bytes, width, height, format, content_type,
                                   thumbnail_status, variant_status, created_at)
               VALUES ({id}, {album}, 'p.jpg', '{sha}', 10, 4, 3, 'jpeg', 'image/jpeg', 'complete', 'complete', 2.0)"""
    old_database(
        path, version_3_schema(), 3,
        "INSERT INTO albums (id, name, created_at) VALUES (2, 'Two', 1.0), (3, 'Three', 1.0)",
        photo.format(id=5, album=1, sha="a" * 64),
        photo.format(id=6, album=3, sha="b" * 64),
        "INSERT INTO jobs (id, photo_id, kind, priority, status, max_attempts, run_at, created_at, updated_at) "
        "VALUES (9, 5, 'variant', 10, 'pending', 3, 4.0, 4.0, 4.0), (10, 6, 'variant', 10, 'pending', 3, 4.0, 4.0, 4.0)",
        # Job 12 was pruned; its attempt stays in the history.
        "INSERT INTO job_attempts (id, photo_id, job_id, kind, attempt, started_at) VALUES (20, 5, 12, 'thumbnail', 1, 3.0)",
        "DELETE FROM albums WHERE id = 3",  # and with it photo 6 and job 10 (as foreign keys would cascade)
        "DELETE FROM photos WHERE id = 6",
        "DELETE FROM jobs WHERE id = 10",
    )
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT max(id) FROM albums").fetchone()[0] == 2
    assert conn.execute("SELECT max(id) FROM photos").fetchone()[0] == 5
    conn.close()

    db = Database(path, id_floors=lambda: {"photos": 7, "albums": 4})  # a variant folder 7, a tus upload for album 4
    await db.open()
    try:
        assert await db.schema_version() == SCHEMA_VERSION_BASE + len(MIGRATIONS)
        assert (await db.get_photo(5)).filename == "p.jpg"  # the rows are kept
        album = await db.create_album("New", 5.0)
        assert album.id == 5
        [(photo_id, _)] = await db.insert_photos(album.id, [_new_photo()], [], 5.0, 3)
        assert photo_id == 8
        jobs = await db.list_jobs(None, 10)
        assert sorted(j.id for j in jobs) == [9, 13, 14]  # past pruned job 12
        claimed, _ = await db.claim_jobs(6.0, 60.0, 1)
        attempt_rows = sqlite3.connect(path).execute("SELECT max(id) FROM job_attempts").fetchone()[0]
        assert claimed and attempt_rows == 21
        # Deleting the newest rows now frees nothing either.
        assert await db.delete_album(album.id, _no_files)
        assert (await db.create_album("Newer", 6.0)).id == 6
    finally:
        await db.close()
    assert_same_columns_as_a_new_database(path)
    conn = sqlite3.connect(path)
    assert "AUTOINCREMENT" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'photos'").fetchone()[0]
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    fresh = sqlite3.connect(":memory:")
    fresh.executescript(schema_sql())
    assert indexes == {r[0] for r in fresh.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}


def _new_photo():
    from photoq.models import NewPhoto

    return NewPhoto("n.jpg", "c" * 64, 10, 4, 3, "jpeg", "image/jpeg", None)


async def _no_files(*_):
    return None


async def test_a_version_5_database_gets_the_nodes_registry(tmp_path):
    path = tmp_path / "photoq.db"
    old_database(path, version_5_schema(), 5)
    db = Database(path)
    await db.open()
    try:
        assert await db.schema_version() == SCHEMA_VERSION_BASE + len(MIGRATIONS)
        assert [a.name for a in await db.list_albums()] == ["Old"]
        assert await db.list_nodes() == []
    finally:
        await db.close()
    assert_same_columns_as_a_new_database(path)


async def test_a_version_6_database_gets_the_album_batch_of_its_unfinished_work(tmp_path):
    path = tmp_path / "photoq.db"
    photo = """INSERT INTO photos (id, album_id, filename, sha256, size_bytes, width, height, format, content_type,
                                   thumbnail_status, variant_status, created_at)
               VALUES ({id}, 1, 'p.jpg', '{id}', 10, 4, 3, 'jpeg', 'image/jpeg', '{status}', '{status}', {at})"""
    old_database(path, version_6_schema(), 6, photo.format(id=1, status="complete", at=1.0),
                 photo.format(id=2, status="pending", at=5.0), photo.format(id=3, status="pending", at=6.0))
    db = Database(path)
    await db.open()
    try:
        (batch,) = await db.album_batches(1)
        assert (batch.total, batch.done, batch.started_at) == (2, 0, 5.0)  # the unfinished photos, not the old one
    finally:
        await db.close()
    assert_same_columns_as_a_new_database(path)


async def test_a_version_7_database_gets_the_trash_and_keeps_its_id_sequence(tmp_path):
    path = tmp_path / "photoq.db"
    old_database(
        path, version_7_schema(), 7,
        """INSERT INTO photos (id, album_id, filename, sha256, size_bytes, width, height, format, content_type,
                               thumbnail_status, variant_status, created_at)
           VALUES (7, 1, 'old.jpg', 'ab', 10, 400, 300, 'jpeg', 'image/jpeg', 'complete', 'pending', 2.0)""",
        "INSERT INTO outputs (photo_id, name, width, height, size_bytes, created_at) VALUES (7, 'thumb-150', 150, 113, 9, 3.0)",
        "INSERT INTO jobs (id, photo_id, kind, priority, status, max_attempts, run_at, created_at, updated_at) "
        "VALUES (30, 7, 'variant', 10, 'pending', 3, 4.0, 4.0, 4.0)",
        "UPDATE sqlite_sequence SET seq = 12 WHERE name = 'photos'",  # photos 8 to 12 were deleted before
    )
    db = Database(path)
    await db.open()
    try:
        assert await db.schema_version() == SCHEMA_VERSION_BASE + len(MIGRATIONS)
        photo = await db.get_photo(7)
        assert photo.filename == "old.jpg" and list(await db.photo_outputs(7)) == ["thumb-150"]
        (job,) = await db.list_jobs(None, 10)
        assert (job.id, job.photo_id) == (30, 7)
        assert (await db.get_album(1)).cover_photo_id is None
        assert await db.trash_photos([7], 5.0) == [(7, 1)]
        assert await db.get_photo(7) is None
    finally:
        await db.close()
    assert_same_columns_as_a_new_database(path)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'photos'").fetchone()[0] == 12
    # The same bytes may come back while the old photo is in the trash.
    conn.execute("INSERT INTO photos (album_id, filename, sha256, size_bytes, width, height, format, content_type, "
                 "created_at) VALUES (1, 'again.jpg', 'ab', 10, 4, 3, 'jpeg', 'image/jpeg', 6.0)")
    assert conn.execute("SELECT max(id) FROM photos").fetchone()[0] == 13
    conn.close()
