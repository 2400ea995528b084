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
    # 3 -> 4: the trash (albums and photos stay, marked deleted, until purged), the chosen album cover, and ids
    # that are never given again (AUTOINCREMENT, which SQLite can only add by building the tables anew; foreign keys
    # are off meanwhile, see migrate_sqlite, so that dropping the old tables deletes nothing else).
    """
    CREATE TABLE albums_v4 (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        name            TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
        created_at      REAL    NOT NULL,
        deleted_at      REAL,
        cover_photo_id  INTEGER
    );
    INSERT INTO albums_v4 (id, name, created_at) SELECT id, name, created_at FROM albums;
    CREATE TABLE photos_v4 (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        album_id           INTEGER NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
        filename           TEXT    NOT NULL,
        sha256             TEXT    NOT NULL,
        size_bytes         INTEGER NOT NULL,
        width              INTEGER NOT NULL,
        height             INTEGER NOT NULL,
        format             TEXT    NOT NULL,
        content_type       TEXT    NOT NULL,
        taken_at           TEXT,
        exif               TEXT    NOT NULL DEFAULT '{}',
        thumbnail_status   TEXT    NOT NULL DEFAULT 'pending'
                           CHECK (thumbnail_status IN ('pending', 'processing', 'complete', 'failed')),
        variant_status     TEXT    NOT NULL DEFAULT 'pending'
                           CHECK (variant_status IN ('pending', 'processing', 'complete', 'failed')),
        processing_status  TEXT GENERATED ALWAYS AS (CASE
                               WHEN thumbnail_status = 'failed' OR variant_status = 'failed' THEN 'failed'
                               WHEN thumbnail_status = 'complete' AND variant_status = 'complete' THEN 'complete'
                               WHEN thumbnail_status = 'pending' AND variant_status = 'pending' THEN 'pending'
                               ELSE 'processing' END) STORED,
        error              TEXT,
        created_at         REAL    NOT NULL,
        completed_at       REAL,
        thumbhash          TEXT,
        deleted_at         REAL,
        trashed_with_album INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO photos_v4 (id, album_id, filename, sha256, size_bytes, width, height, format, content_type, taken_at,
                           exif, thumbnail_status, variant_status, error, created_at, completed_at, thumbhash)
        SELECT id, album_id, filename, sha256, size_bytes, width, height, format, content_type, taken_at,
               exif, thumbnail_status, variant_status, error, created_at, completed_at, thumbhash FROM photos;
    CREATE TABLE jobs_v4 (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        photo_id          INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        kind              TEXT    NOT NULL CHECK (kind IN ('thumbnail', 'variant')),
        priority          INTEGER NOT NULL,
        status            TEXT    NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'processing', 'complete', 'failed')),
        attempts          INTEGER NOT NULL DEFAULT 0,
        max_attempts      INTEGER NOT NULL,
        run_at            REAL    NOT NULL,
        lease_expires_at  REAL,
        last_error        TEXT,
        created_at        REAL    NOT NULL,
        updated_at        REAL    NOT NULL,
        outputs           TEXT,
        UNIQUE (photo_id, kind)
    );
    INSERT INTO jobs_v4 SELECT id, photo_id, kind, priority, status, attempts, max_attempts, run_at, lease_expires_at,
                               last_error, created_at, updated_at, outputs FROM jobs;
    DROP TABLE jobs;
    DROP TABLE photos;
    DROP TABLE albums;
    ALTER TABLE albums_v4 RENAME TO albums;
    ALTER TABLE photos_v4 RENAME TO photos;
    ALTER TABLE jobs_v4 RENAME TO jobs;
    CREATE UNIQUE INDEX photos_live_content ON photos(album_id, sha256) WHERE deleted_at IS NULL;
    CREATE INDEX photos_trashed ON photos(deleted_at) WHERE deleted_at IS NOT NULL;
    CREATE INDEX photos_by_sha256 ON photos(sha256);
    CREATE INDEX photos_by_status ON photos(processing_status, album_id);
    CREATE INDEX photos_by_album_status ON photos(album_id, processing_status);
    CREATE INDEX jobs_runnable ON jobs(priority, run_at, id) WHERE status = 'pending';
    CREATE INDEX jobs_leased ON jobs(lease_expires_at) WHERE status = 'processing';
    CREATE INDEX jobs_by_status ON jobs(status, created_at)
    """,
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
    # Foreign keys off while tables are built anew (it cannot change inside a transaction): dropping an old table
    # must not cascade into the rows that point at it. Checked before they are on again.
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for number in range(version, SCHEMA_VERSION):
            sql = MIGRATIONS[number - SCHEMA_VERSION_BASE]
            conn.executescript(f"BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {number + 1}; COMMIT;")
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"database {path}: rows pointing at nothing after the migrations: {broken[:5]}")
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
