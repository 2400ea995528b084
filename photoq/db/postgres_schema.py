"""The PostgreSQL form of the schema (version 4 of the numbered MIGRATIONS), for the PostgreSQL backend to come.

Types: ids are `bigint GENERATED ALWAYS AS IDENTITY` (never reused, like SQLite's AUTOINCREMENT); JSON is `jsonb`;
times are `double precision` unix seconds, not timestamptz, because the Store contract and every caller (the queue's
injected clocks, backoff arithmetic, the API's iso()) speak float seconds: one representation on both backends,
and no conversion at each boundary where a mistake could shift a lease or a backoff.

The claim takes runnable jobs in priority order and skips rows another node has locked, so nodes never wait on
each other. EXPLAIN with 4 000 jobs (tests/test_postgres_server.py checks it) shows it served by jobs_runnable, in
order, reading only as many index entries as it locks:
    Update on jobs j
      CTE picked
        ->  Limit
              ->  LockRows
                    ->  Index Scan using jobs_runnable on jobs
                          Index Cond: (run_at <= '5'::double precision)
                          Filter: (status = 'pending'::text)
      ->  Nested Loop
            ->  CTE Scan on picked
            ->  Index Scan using jobs_pkey on jobs j  (Index Cond: (id = picked.id))
"""

from __future__ import annotations

SCHEMA_VERSION = 4

SCHEMA = """
CREATE TABLE albums (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at  double precision NOT NULL
);

CREATE TABLE photos (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    album_id           bigint NOT NULL REFERENCES albums(id) ON DELETE CASCADE,
    filename           text NOT NULL,
    sha256             text NOT NULL,
    size_bytes         bigint NOT NULL,
    width              integer NOT NULL,
    height             integer NOT NULL,
    format             text NOT NULL,
    content_type       text NOT NULL,
    taken_at           text,
    exif               jsonb NOT NULL DEFAULT '{}',
    thumbnail_status   text NOT NULL DEFAULT 'pending'
                       CHECK (thumbnail_status IN ('pending', 'processing', 'complete', 'failed')),
    variant_status     text NOT NULL DEFAULT 'pending'
                       CHECK (variant_status IN ('pending', 'processing', 'complete', 'failed')),
    processing_status  text GENERATED ALWAYS AS (CASE
                           WHEN thumbnail_status = 'failed' OR variant_status = 'failed' THEN 'failed'
                           WHEN thumbnail_status = 'complete' AND variant_status = 'complete' THEN 'complete'
                           WHEN thumbnail_status = 'pending' AND variant_status = 'pending' THEN 'pending'
                           ELSE 'processing' END) STORED,
    error              text,
    created_at         double precision NOT NULL,
    completed_at       double precision,
    thumbhash          text,
    UNIQUE (album_id, sha256)
);
CREATE INDEX photos_by_sha256 ON photos(sha256);
CREATE INDEX photos_by_status ON photos(processing_status, album_id);
CREATE INDEX photos_by_album_status ON photos(album_id, processing_status);

CREATE TABLE jobs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    photo_id          bigint NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('thumbnail', 'variant')),
    priority          integer NOT NULL,
    status            text NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'processing', 'complete', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL,
    run_at            double precision NOT NULL,
    lease_expires_at  double precision,
    last_error        text,
    created_at        double precision NOT NULL,
    updated_at        double precision NOT NULL,
    outputs           jsonb,
    lease_token       text,
    UNIQUE (photo_id, kind)
);
CREATE INDEX jobs_runnable ON jobs(priority, run_at, id) WHERE status = 'pending';
CREATE INDEX jobs_leased ON jobs(lease_expires_at) WHERE status = 'processing';
CREATE INDEX jobs_by_status ON jobs(status, created_at);

CREATE TABLE job_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    photo_id     bigint NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    job_id       bigint NOT NULL,
    kind         text NOT NULL,
    attempt      integer NOT NULL,
    started_at   double precision NOT NULL,
    finished_at  double precision,
    outcome      text CHECK (outcome IN ('complete', 'retry', 'failed', 'interrupted')),
    error        text,
    retry_at     double precision
);
CREATE INDEX job_attempts_by_photo ON job_attempts(photo_id, id);

CREATE TABLE outputs (
    photo_id       bigint NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    name           text NOT NULL,
    width          integer NOT NULL,
    height         integer NOT NULL,
    size_bytes     bigint NOT NULL,
    created_at     double precision NOT NULL,
    format         text,
    spec           text,
    source_sha256  text,
    PRIMARY KEY (photo_id, name)
);

CREATE TABLE staged_files (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    path        text NOT NULL,
    sha256      text NOT NULL,
    created_at  double precision NOT NULL
);
CREATE INDEX staged_files_by_sha256 ON staged_files(sha256);

CREATE TABLE settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
"""

# Lease up to $2 runnable jobs at time $1 until $3, each with a fresh lease token; rows locked by another node's
# claim are skipped, not waited for.
CLAIM_JOBS = """
WITH picked AS (
    SELECT id FROM jobs
    WHERE status = 'pending' AND run_at <= $1
    ORDER BY priority, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j SET status = 'processing', attempts = j.attempts + 1, lease_expires_at = $3, updated_at = $1,
                  lease_token = gen_random_uuid()::text
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.photo_id, j.kind, j.priority, j.status, j.attempts, j.max_attempts, j.run_at, j.lease_expires_at,
          j.last_error, j.created_at, j.outputs, j.lease_token
"""
