-- photoq database schema: the truth about the data.
-- Versioned with PRAGMA user_version; photoq/db/migrations.py applies this file to a new database and stamps it with
-- the latest version, and takes older databases forward with its numbered MIGRATIONS (this file shows the result:
-- version 2 added photos.thumbhash, version 3 outputs.format, outputs.spec and jobs.outputs, version 4 AUTOINCREMENT,
-- jobs.lease_token and outputs.source_sha256, version 5 the sessions and login_codes tables, version 6 the nodes
-- table, version 7 the album batch: albums.batch_started_at, albums.batch_key, photos.queued_at, version 8 the trash
-- (albums.deleted_at, photos.deleted_at and trashed_with_album; one live photo per content) and
-- albums.cover_photo_id). Times are unix seconds (REAL, UTC); the API renders ISO 8601.
--
-- Ids of albums, photos, jobs and attempts are never reused (AUTOINCREMENT): a URL, a resumable upload, a running
-- job's result or a file on disk that names a deleted row must never land on a new one.

CREATE TABLE albums (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  REAL    NOT NULL,
    -- The album's batch: the work that entered its queue since its last idle moment (v7). It starts when work
    -- arrives while nothing of the album is unfinished, unless that work continues the upload batch (the
    -- X-Photoq-Batch header) that started it.
    batch_started_at  REAL,
    batch_key         TEXT,
    deleted_at  REAL,                          -- in the trash since; gone from the API (v8)
    cover_photo_id INTEGER                     -- chosen cover; NULL: the first photo with thumbnails (v8)
);

CREATE TABLE photos (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    album_id           INTEGER NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
    filename           TEXT    NOT NULL,          -- display name only, never used on disk
    sha256             TEXT    NOT NULL,          -- the original's content address
    size_bytes         INTEGER NOT NULL,
    width              INTEGER NOT NULL,          -- as displayed (EXIF orientation applied)
    height             INTEGER NOT NULL,
    format             TEXT    NOT NULL,          -- jpeg | png | webp | gif | tiff | heic | avif (sniffed from the bytes)
    content_type       TEXT    NOT NULL,
    taken_at           TEXT,
    exif               TEXT    NOT NULL DEFAULT '{}',
    thumbnail_status   TEXT    NOT NULL DEFAULT 'pending'
                       CHECK (thumbnail_status IN ('pending', 'processing', 'complete', 'failed')),
    variant_status     TEXT    NOT NULL DEFAULT 'pending'
                       CHECK (variant_status IN ('pending', 'processing', 'complete', 'failed')),
    -- Derived, so it can never disagree with its parts: failed if any part failed, complete when all are,
    -- pending while nothing has started, else processing.
    processing_status  TEXT GENERATED ALWAYS AS (CASE
                           WHEN thumbnail_status = 'failed' OR variant_status = 'failed' THEN 'failed'
                           WHEN thumbnail_status = 'complete' AND variant_status = 'complete' THEN 'complete'
                           WHEN thumbnail_status = 'pending' AND variant_status = 'pending' THEN 'pending'
                           ELSE 'processing' END) STORED,
    error              TEXT,
    created_at         REAL    NOT NULL,
    completed_at       REAL,
    thumbhash          TEXT,                      -- base64 ThumbHash placeholder, from the thumbnail job (v2)
    queued_at          REAL,                      -- when it last entered the queue: upload, retry, reprocess (v7)
    deleted_at         REAL,                      -- in the trash since; gone from the API, files kept (v8)
    trashed_with_album INTEGER NOT NULL DEFAULT 0 -- 1: went with its album, comes back with it (v8)
);
-- One live photo per content in an album (v8): a photo in the trash does not keep the same bytes from coming back.
CREATE UNIQUE INDEX photos_live_content ON photos(album_id, sha256) WHERE deleted_at IS NULL;
CREATE INDEX photos_trashed ON photos(deleted_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX photos_by_sha256 ON photos(sha256);
CREATE INDEX photos_by_status ON photos(processing_status, album_id);
CREATE INDEX photos_by_album_status ON photos(album_id, processing_status);
CREATE INDEX photos_by_album_queued ON photos(album_id, queued_at);

-- The durable queue. A job is claimed by setting status = 'processing', a lease and a fresh lease token; an expired
-- lease makes it runnable again. 'failed' is the dead letter: it stays until retried or cleared by hand.
CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    photo_id          INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    kind              TEXT    NOT NULL CHECK (kind IN ('thumbnail', 'variant')),
    priority          INTEGER NOT NULL,            -- lower runs first
    status            TEXT    NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'complete', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    run_at            REAL    NOT NULL,            -- not claimed before this time (backoff)
    lease_expires_at  REAL,
    last_error        TEXT,
    created_at        REAL    NOT NULL,
    updated_at        REAL    NOT NULL,
    outputs           TEXT,                        -- JSON array of the output names to render; NULL: all (v3)
    lease_token       TEXT,                        -- written by each claim; only its holder records a result (v4)
    UNIQUE (photo_id, kind)
);
CREATE INDEX jobs_runnable ON jobs(priority, run_at, id) WHERE status = 'pending';
CREATE INDEX jobs_leased ON jobs(lease_expires_at) WHERE status = 'processing';
CREATE INDEX jobs_by_status ON jobs(status, created_at);

-- One row per attempt: the processing history shown to people and the proof of backoff.
CREATE TABLE job_attempts (
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
);
CREATE INDEX job_attempts_by_photo ON job_attempts(photo_id, id);

-- Outputs that exist on disk for a photo (written by its jobs), and what they were rendered with. Rows from
-- before version 3 have NULL format and spec: their file has the configured format's name.
CREATE TABLE outputs (
    photo_id    INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL,
    created_at  REAL    NOT NULL,
    format      TEXT,                      -- the format the file was written in, e.g. webp (v3)
    spec        TEXT,                      -- what rendered it, e.g. "webp 1080x1920 q80 m0" (v3)
    source_sha256 TEXT,                    -- the original it was rendered from; doctor checks it is the photo's (v4)
    PRIMARY KEY (photo_id, name)
) WITHOUT ROWID;

-- Originals renamed into the store whose photo rows are not committed yet. Rows live only between the two
-- transactions of one upload (each upload its own rows, even for the same bytes); a row left at start-up names a
-- file of a killed upload, removed unless a photo references its bytes.
CREATE TABLE staged_files (
    id          INTEGER PRIMARY KEY,
    path        TEXT NOT NULL,             -- relative to the data directory
    sha256      TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX staged_files_by_sha256 ON staged_files(sha256);

-- Small durable switches, e.g. queue.paused.
CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) WITHOUT ROWID;

-- Web UI sessions (v5): the cookie carries a random id; only its SHA-256 is stored. Logging out deletes the row,
-- "log out everywhere" deletes them all. expires_at slides with use, up to created_at + auth.session_max_days.
CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    created_at    REAL NOT NULL,
    last_seen_at  REAL NOT NULL,
    expires_at    REAL NOT NULL
) WITHOUT ROWID;

-- One-time login codes (v5) for printed login links (`photoq login-url`, the first start): SHA-256 only,
-- deleted when redeemed, valid for auth.login_code_minutes.
CREATE TABLE login_codes (
    code_hash   TEXT PRIMARY KEY,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
) WITHOUT ROWID;

-- Cluster mode's nodes registry (v6): one row per running photoq, written by its heartbeat (photoq/cluster.py) and
-- removed when it stops or after it has been silent too long. capacity is the node's measured throughput (JSON).
CREATE TABLE nodes (
    id          TEXT    PRIMARY KEY,      -- random, new at every start
    host        TEXT    NOT NULL,
    port        INTEGER NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('all', 'web', 'worker')),
    workers     INTEGER NOT NULL,
    busy        INTEGER NOT NULL,
    capacity    TEXT,
    started_at  REAL    NOT NULL,
    last_seen   REAL    NOT NULL
) WITHOUT ROWID;
