"""The schema and its numbered migrations (PRAGMA user_version)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# Table -> the highest id known to have been handed out outside the database (a photo's variant folder, the album of
# a resumable upload): a migration that starts counting ids for good starts past these.
IdFloors = Mapping[str, int]

SqliteStep = Callable[[sqlite3.Connection, int, IdFloors], None]


@dataclass(frozen=True)
class Migration:
    """One schema change: SQL run in one transaction with the version it reaches, or a function that does the
    same itself (a change SQLite's ALTER TABLE cannot make)."""

    sqlite: str | SqliteStep


SCHEMA_VERSION_BASE = 1
# Numbered migrations: MIGRATIONS[0] takes a database from version 1 to 2, and so on. Never edit one that has
# shipped; add a new one and update schema.sql to match the result.
MIGRATIONS: tuple[Migration, ...] = (
    # 1 -> 2: the ThumbHash placeholder of a photo, written by its thumbnail job.
    Migration("ALTER TABLE photos ADD COLUMN thumbhash TEXT"),
    # 2 -> 3: outputs remember what they were rendered with, so `photoq reprocess` can tell a stale output from a
    # fresh one and files are found in the format they were written in; a job may render only some outputs.
    Migration(
        "ALTER TABLE outputs ADD COLUMN format TEXT; ALTER TABLE outputs ADD COLUMN spec TEXT; "
        "ALTER TABLE jobs ADD COLUMN outputs TEXT"
    ),
    # 3 -> 4: ids are never reused (AUTOINCREMENT; the tables are rebuilt), a claim writes a lease token that fences
    # the job's result, an output remembers the original it was rendered from.
    Migration(lambda conn, version, floors: _never_reuse_ids(conn, version, floors)),
    # 4 -> 5: web sessions and one-time login codes, server-side and revocable (only their SHA-256 is stored).
    Migration(
        "CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, created_at REAL NOT NULL, last_seen_at REAL NOT NULL, "
        "expires_at REAL NOT NULL) WITHOUT ROWID; "
        "CREATE TABLE login_codes (code_hash TEXT PRIMARY KEY, created_at REAL NOT NULL, expires_at REAL NOT NULL) "
        "WITHOUT ROWID"
    ),
    # 5 -> 6: the nodes registry of cluster mode: each running photoq writes a heartbeat row (see cluster.py).
    Migration(
        "CREATE TABLE nodes (id TEXT PRIMARY KEY, host TEXT NOT NULL, port INTEGER NOT NULL, "
        "role TEXT NOT NULL CHECK (role IN ('all', 'web', 'worker')), "
        "workers INTEGER NOT NULL, busy INTEGER NOT NULL, capacity TEXT, started_at REAL NOT NULL, "
        "last_seen REAL NOT NULL) WITHOUT ROWID"
    ),
    # 6 -> 7: an album's batch (its work since its last idle moment) is kept here, so every page load, tab and device
    # shows the same "n of m": when it started and the upload batch (X-Photoq-Batch) that started it, and when each
    # photo last entered the queue.
    Migration(
        "ALTER TABLE albums ADD COLUMN batch_started_at REAL; ALTER TABLE albums ADD COLUMN batch_key TEXT; "
        "ALTER TABLE photos ADD COLUMN queued_at REAL; UPDATE photos SET queued_at = created_at; "
        "CREATE INDEX photos_by_album_queued ON photos(album_id, queued_at); "
        "UPDATE albums SET batch_started_at = (SELECT min(created_at) FROM photos p WHERE p.album_id = albums.id "
        "AND p.processing_status IN ('pending', 'processing'))"
    ),
    # 7 -> 8: the trash (albums and photos stay, marked deleted, until purged), the chosen album cover; one live
    # photo per content instead of one photo (photos is rebuilt: SQLite cannot drop a UNIQUE constraint).
    Migration(lambda conn, version, floors: _trash(conn, version)),
)
SCHEMA_VERSION = SCHEMA_VERSION_BASE + len(MIGRATIONS)


def schema_sql() -> str:
    packaged = resources.files("photoq").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent.parent / "schema.sql").read_text(encoding="utf-8")


def migrate_sqlite(conn: sqlite3.Connection, path: Path, id_floors: Callable[[], IdFloors] | None = None) -> None:
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
        step = MIGRATIONS[number - SCHEMA_VERSION_BASE].sqlite
        if isinstance(step, str):
            conn.executescript(f"BEGIN IMMEDIATE; {step}; PRAGMA user_version = {number + 1}; COMMIT;")
        else:
            step(conn, number + 1, id_floors() if id_floors is not None else {})


# Version 4's tables, as they were created by it: a shipped migration never changes, whatever schema.sql becomes.
_V4_TABLES = {
    "albums": """CREATE TABLE albums_v4 (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
        created_at  REAL    NOT NULL
    )""",
    "photos": """CREATE TABLE photos_v4 (
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
        UNIQUE (album_id, sha256)
    )""",
    "jobs": """CREATE TABLE jobs_v4 (
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
        lease_token       TEXT,
        UNIQUE (photo_id, kind)
    )""",
    "job_attempts": """CREATE TABLE job_attempts_v4 (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        photo_id     INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
        job_id       INTEGER NOT NULL,
        kind         TEXT    NOT NULL,
        attempt      INTEGER NOT NULL,
        started_at   REAL    NOT NULL,
        finished_at  REAL,
        outcome      TEXT    CHECK (outcome IN ('complete', 'retry', 'failed', 'interrupted')),
        error        TEXT,
        retry_at     REAL
    )""",
}
_V4_INDEXES = (
    "CREATE INDEX photos_by_sha256 ON photos(sha256)",
    "CREATE INDEX photos_by_status ON photos(processing_status, album_id)",
    "CREATE INDEX photos_by_album_status ON photos(album_id, processing_status)",
    "CREATE INDEX jobs_runnable ON jobs(priority, run_at, id) WHERE status = 'pending'",
    "CREATE INDEX jobs_leased ON jobs(lease_expires_at) WHERE status = 'processing'",
    "CREATE INDEX jobs_by_status ON jobs(status, created_at)",
    "CREATE INDEX job_attempts_by_photo ON job_attempts(photo_id, id)",
)
# Beyond the table's own max(id), ids known to have been handed out: history outlives pruned jobs.
_V4_HIGHEST_SEEN = {
    "jobs": "SELECT max(job_id) FROM job_attempts",
}


def _never_reuse_ids(conn: sqlite3.Connection, version: int, floors: IdFloors) -> None:
    """Rebuild albums, photos, jobs and job_attempts with AUTOINCREMENT (SQLite cannot add it to a table), in one
    transaction with foreign keys off, as SQLite's documented procedure for such changes goes: create the new
    table, copy, drop the old, rename, recreate the indexes. Each table's sequence starts past the highest id it
    ever handed out, as far as can be known: its own rows, what refers to it, and `floors`."""
    conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction, so before BEGIN
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for table, create in _V4_TABLES.items():
                old = [row[1] for row in conn.execute(f"PRAGMA table_xinfo({table})") if row[6] == 0]  # not generated
                conn.execute(create)
                if table == "jobs":
                    old = [c for c in old if c != "lease_token"]
                columns = ", ".join(old)
                conn.execute(f"INSERT INTO {table}_v4 ({columns}) SELECT {columns} FROM {table}")
                highest = [conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0, floors.get(table, 0)]
                if table in _V4_HIGHEST_SEEN:
                    highest.append(conn.execute(_V4_HIGHEST_SEEN[table]).fetchone()[0] or 0)
                conn.execute(f"DROP TABLE {table}")
                conn.execute(f"ALTER TABLE {table}_v4 RENAME TO {table}")
                conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, max(highest)))
            for index in _V4_INDEXES:
                conn.execute(index)
            conn.execute("ALTER TABLE outputs ADD COLUMN source_sha256 TEXT")
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                rows = [tuple(r) for r in broken]
                raise RuntimeError(f"schema version {version}: rows refer to missing rows: {rows}")
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


# Version 8's photos table, as it was created by it.
_V8_PHOTOS = """CREATE TABLE photos_v8 (
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
    queued_at          REAL,
    deleted_at         REAL,
    trashed_with_album INTEGER NOT NULL DEFAULT 0
)"""
_V8_INDEXES = (
    "CREATE UNIQUE INDEX photos_live_content ON photos(album_id, sha256) WHERE deleted_at IS NULL",
    "CREATE INDEX photos_trashed ON photos(deleted_at) WHERE deleted_at IS NOT NULL",
    "CREATE INDEX photos_by_sha256 ON photos(sha256)",
    "CREATE INDEX photos_by_status ON photos(processing_status, album_id)",
    "CREATE INDEX photos_by_album_status ON photos(album_id, processing_status)",
    "CREATE INDEX photos_by_album_queued ON photos(album_id, queued_at)",
)


def _trash(conn: sqlite3.Connection, version: int) -> None:
    """albums gets deleted_at and cover_photo_id; photos is built anew (as _never_reuse_ids does: foreign keys off,
    one transaction) with deleted_at and trashed_with_album and its uniqueness only among live photos; its id
    sequence carries on where it was."""
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("ALTER TABLE albums ADD COLUMN deleted_at REAL")
            conn.execute("ALTER TABLE albums ADD COLUMN cover_photo_id INTEGER")
            old = [row[1] for row in conn.execute("PRAGMA table_xinfo(photos)") if row[6] == 0]  # not generated
            conn.execute(_V8_PHOTOS)
            columns = ", ".join(old)
            conn.execute(f"INSERT INTO photos_v8 ({columns}) SELECT {columns} FROM photos")
            seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'photos'").fetchone()
            conn.execute("DROP TABLE photos")
            conn.execute("ALTER TABLE photos_v8 RENAME TO photos")
            conn.execute("DELETE FROM sqlite_sequence WHERE name = 'photos'")
            highest = max(seq[0] if seq else 0, conn.execute("SELECT max(id) FROM photos").fetchone()[0] or 0)
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('photos', ?)", (highest,))
            for index in _V8_INDEXES:
                conn.execute(index)
            broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                missing = [tuple(r) for r in broken]
                raise RuntimeError(f"schema version {version}: rows refer to missing rows: {missing}")
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
