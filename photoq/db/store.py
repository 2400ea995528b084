"""The storage interface: every verb the queue, the web layer and the operator commands may ask of the database.

A backend (SQLite today) implements each verb. What every backend guarantees:
- a verb that writes commits in exactly one transaction, or not at all (an exception leaves nothing behind);
- a verb that reads sees only committed data, never a half-done write of another verb;
- times are float unix seconds (UTC) in and out; ids are ints;
- the workers' verbs (claim, renew, complete, fail, release) act only on a job whose lease the caller holds:
  a lost lease makes them return None and change nothing (fencing).
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence

from ..gallery_order import Cursor, GalleryOrder
from ..models import (
    Album,
    Attempt,
    Batch,
    ClaimedJob,
    Job,
    JobKind,
    NewPhoto,
    NextJob,
    Node,
    OutputFile,
    Photo,
    PhotoState,
    Stats,
    Status,
)

# remove_files(photo ids deleted, (sha256, format) of originals no photo references any more)
RemovePhotoFiles = Callable[[list[int], list[tuple[str, str]]], Awaitable[None]]
# remove(relative paths under the data directory)
RemovePaths = Callable[[list[str]], Awaitable[None]]
# Per asked part, the outcome ("queued", "already", "failed", "gone") and the output names it added.
QueueOutcome = tuple[str, list[str]]


# on_message(payload) for each message another node sent.
OnMessage = Callable[[str], None]


class EventBridge(abc.ABC):
    """Carries short messages (live events, "work queued", "paused") between the nodes sharing one database.
    Best effort: a message sent while the database is unreachable is lost, and `on_reconnect` tells the receiver
    it may have missed some."""

    MAX_PAYLOAD_BYTES = 7900  # PostgreSQL's NOTIFY takes under 8000 bytes

    @abc.abstractmethod
    async def start(self, on_message: OnMessage, on_reconnect: Callable[[], None]) -> None:
        """Start listening; `on_message` gets every message sent by any node (this one's too)."""

    @abc.abstractmethod
    async def send(self, payloads: Sequence[str]) -> None:
        """Send messages (each under MAX_PAYLOAD_BYTES of UTF-8) to every listening node, in order."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening and disconnect."""


class Store(abc.ABC):
    """The queue and catalogue's storage. Open before use, close when done."""

    # True when this database belongs to one photoq process (SQLite in the data directory): every job marked
    # processing at start-up is then an orphan of the last run. False when several nodes share it (PostgreSQL): only
    # expired leases may be taken back.
    single_node: bool = True

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema to the current version (migrations run in their own transactions)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending work and disconnect. Safe to call twice."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database is at."""

    # -- settings ----------------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def get_setting(self, key: str) -> str | None:
        """A durable switch (e.g. queue.paused), None when never set."""

    @abc.abstractmethod
    async def set_setting(self, key: str, value: str) -> None:
        """Set a durable switch (insert or replace)."""

    # -- nodes (cluster mode) ----------------------------------------------------------------------------------

    @abc.abstractmethod
    def event_bridge(self) -> EventBridge | None:
        """A bridge to the other nodes sharing this database; None when no other node can (SQLite)."""

    @abc.abstractmethod
    async def heartbeat_node(self, node: Node) -> None:
        """Insert or replace this node's registry row (its last_seen is node.last_seen)."""

    @abc.abstractmethod
    async def list_nodes(self) -> list[Node]:
        """Every node in the registry, oldest start first."""

    @abc.abstractmethod
    async def forget_node(self, node_id: str) -> None:
        """Remove a node's row (it stopped)."""

    @abc.abstractmethod
    async def forget_silent_nodes(self, silent_since: float) -> int:
        """Remove the rows of nodes not seen since `silent_since`; how many."""

    # -- catalogue: albums -------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def create_album(self, name: str, now: float) -> Album:
        """A new album with a fresh id."""

    @abc.abstractmethod
    async def list_albums(self) -> list[Album]:
        """Every album by id, with its photo count and whether any of its jobs is unfinished."""

    @abc.abstractmethod
    async def get_album(self, album_id: int) -> Album | None:
        """One album as list_albums shows it; None when there is no such album."""

    @abc.abstractmethod
    async def album_cover_photo_ids(self) -> dict[int, int]:
        """album id -> its first photo (lowest id) whose thumbnails exist."""

    @abc.abstractmethod
    async def delete_album(self, album_id: int, remove_files: RemovePhotoFiles) -> bool:
        """Delete an album, its photos, jobs, history and outputs' rows in one transaction; then, still holding off
        every other writer, `remove_files` the deleted photos' files and the originals nothing references any more.
        False when there was no such album."""

    @abc.abstractmethod
    async def delete_photo(self, photo_id: int, remove_files: RemovePhotoFiles) -> bool:
        """delete_album for one photo."""

    # -- catalogue: ingest -------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def stage_files(self, staged: Sequence[tuple[str, str]], now: float) -> list[int]:
        """Record (relative path, sha256) of originals about to be renamed into the store, before the rename; the
        staged row ids, in order. A staged row keeps its file from being treated as an orphan."""

    @abc.abstractmethod
    async def insert_photos(
        self, album_id: int, photos: Sequence[NewPhoto], staged_ids: Sequence[int], now: float, max_attempts: int,
        batch: str | None = None,
    ) -> list[tuple[int | None, int | None]]:
        """Insert photos with their thumbnail and variant jobs and forget `staged_ids`, in one transaction.

        Per photo: (new photo id, None), or (None, id of the photo of this album with the same bytes).
        Raises LookupError when the album no longer exists (nothing is written). The photos join the album's batch
        (see album_batches): `batch` is the upload's X-Photoq-Batch, which keeps a slow upload one batch."""

    @abc.abstractmethod
    async def unstage(self, staged_ids: Sequence[int] | None, remove_files: RemovePaths) -> None:
        """Forget staged rows (all of them when None, as at start-up) and, holding off other writers, remove their
        files unless a photo or another upload in flight references the same bytes. The files go (durably, see
        Storage.remove_relpaths) before the rows are committed away: a power cut in between leaves the rows, and the
        next start removes them again; the other order could bring the files back with nothing left to remove them."""

    @abc.abstractmethod
    async def unstage_older_than(self, before: float, remove_files: RemovePaths) -> int:
        """unstage for the rows staged before `before`: with a shared database, the uploads of nodes that died between
        staging and committing (a live upload commits within moments of staging). How many rows."""

    # -- catalogue: reads --------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def get_photo(self, photo_id: int) -> Photo | None:
        """One photo with its attempt count and last attempt; None when there is no such photo."""

    @abc.abstractmethod
    async def list_photos(self, album_id: int, status: Status | None, limit: int, after: int) -> list[Photo]:
        """A page of an album's photos by id, after the id `after`, optionally of one processing status."""

    @abc.abstractmethod
    async def album_photos_newest_first(self, album_id: int, before: int | None, limit: int) -> list[Photo]:
        """A page of an album's photos, newest first, below the id `before` (None: from the newest)."""

    @abc.abstractmethod
    async def album_photos_in_order(
        self, album_id: int, order: GalleryOrder, after: Cursor | None, limit: int, status: Status | None = None
    ) -> list[tuple[Photo, float | int | str]]:
        """A page of an album's photos in a gallery order (gallery_order.py), after a cursor; each with its sort
        key. Ties in the key go by id, in the order's direction, so pages never skip or repeat a photo."""

    @abc.abstractmethod
    async def album_photo_ids_in_order(self, album_id: int, order: GalleryOrder) -> list[int]:
        """Every photo id of an album in a gallery order."""

    @abc.abstractmethod
    async def photos_by_ids(self, photo_ids: Sequence[int]) -> dict[int, Photo]:
        """id -> photo, for the ids that exist."""

    @abc.abstractmethod
    async def album_photos_with_sha256(self, album_id: int, hashes: Sequence[str]) -> dict[str, int]:
        """sha256 -> photo id, for the given hashes the album has."""

    # -- album management and the trash (a trashed album or photo is gone for every other verb) --------------------

    @abc.abstractmethod
    async def rename_album(self, album_id: int, name: str) -> bool:
        """False when there is no such (live) album."""

    @abc.abstractmethod
    async def set_album_cover(self, album_id: int, photo_id: int | None) -> bool:
        """Choose a live photo of the album as its cover (None: the automatic one). False when either is missing."""

    @abc.abstractmethod
    async def move_photos(self, photo_ids: Sequence[int], album_id: int) -> tuple[list[tuple[int, int]], list[int]]:
        """Move live photos into a live album: ([(photo id, album it left)], [ids left where they were because the
        album has their bytes]). Raises LookupError when the album is missing."""

    @abc.abstractmethod
    async def trash_album(self, album_id: int, now: float) -> bool:
        """Put a live album and its live photos in the trash; their jobs are deleted, their rows and files kept."""

    @abc.abstractmethod
    async def trash_photos(self, photo_ids: Sequence[int], now: float) -> list[tuple[int, int]]:
        """Put live photos in the trash (their jobs deleted); [(photo id, album id)] of those that were."""

    @abc.abstractmethod
    async def restore_album(self, album_id: int, now: float, max_attempts: int) -> bool:
        """Bring an album back from the trash with the photos that went with it; unfinished parts get jobs again."""

    @abc.abstractmethod
    async def restore_photo(self, photo_id: int, now: float, max_attempts: int) -> tuple[str, int | None]:
        """("restored", album id), ("duplicate", live photo id), ("album_trashed", album id) or ("gone", None)."""

    @abc.abstractmethod
    async def trashed_albums(self) -> list[dict]:
        """Albums in the trash: id, name, created_at, deleted_at, photo_count, cover_photo_id; newest first."""

    @abc.abstractmethod
    async def trashed_photos(self, limit: int) -> list[dict]:
        """Photos trashed on their own (album live): id, filename, album_id, album_name, deleted_at, size_bytes,
        thumbnail_status; newest first."""

    @abc.abstractmethod
    async def trashed_photo_count(self) -> int:
        """How many photos trashed_photos would list without a limit."""

    @abc.abstractmethod
    async def trash_older_than(self, before: float | None) -> tuple[list[int], list[int]]:
        """(album ids, photo ids) in the trash since before `before` (None: all): what a purge takes."""

    @abc.abstractmethod
    async def trashed_photo_album(self, photo_id: int) -> int | None:
        """The album of a photo trashed on its own; None when there is no such photo."""

    @abc.abstractmethod
    async def album_in_trash(self, album_id: int) -> bool:
        """Whether the album is in the trash."""

    @abc.abstractmethod
    async def adjacent_photo_ids(self, album_id: int, photo_id: int) -> tuple[int | None, int | None]:
        """(the next newer, the next older) photo of the same album."""

    @abc.abstractmethod
    async def photo_outputs(self, photo_id: int) -> dict[str, OutputFile]:
        """The outputs recorded for a photo, by name."""

    @abc.abstractmethod
    async def output_versions(self, photo_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        """photo id -> {output name: models.output_version of it}, for file URLs that change when an output does."""

    @abc.abstractmethod
    async def photo_attempts(self, photo_id: int) -> list[Attempt]:
        """A photo's processing history, oldest first."""

    @abc.abstractmethod
    async def photo_labels(self, photo_ids: Sequence[int]) -> dict[int, tuple[str, int, str]]:
        """photo id -> (filename, album id, album name), for lists of jobs (at most 500 ids)."""

    @abc.abstractmethod
    async def stats(self, album_id: int | None = None) -> Stats:
        """Photo counts by processing status, of one album or of all."""

    @abc.abstractmethod
    async def album_batches(self, album_id: int | None = None) -> list[Batch]:
        """The batch of one album, or of every album that has had one: the photos that entered its queue (upload,
        retry, reprocess) since its last idle moment, and any photo still unfinished, counted by status. Every verb
        that queues a photo makes it join its album's batch, starting a new one when nothing of the album was
        unfinished."""

    # -- jobs: the workers' verbs (leases) ---------------------------------------------------------------------

    @abc.abstractmethod
    async def claim_jobs(self, now: float, lease_until: float, limit: int) -> tuple[list[ClaimedJob], list[PhotoState]]:
        """Lease up to `limit` runnable jobs (pending, run_at <= now) in claim order (priority, run_at, id), each with
        a new attempt in its history and a fresh random lease token (Job.lease_token); the claimed jobs and their
        photos' new states. Two claimers never get the same job. Only the holder of the token may renew, complete,
        fail or release the job: once its lease expired and the job was claimed again, the old token is dead."""

    @abc.abstractmethod
    async def claim_job(self, job_id: int, now: float, lease_until: float) -> tuple[list[ClaimedJob], list[PhotoState]]:
        """claim_jobs for one chosen job, if it is still runnable (nothing when it was deleted or claimed)."""

    @abc.abstractmethod
    async def renew_leases(self, leases: Sequence[tuple[int, str]], lease_until: float) -> None:
        """Extend the lease of each (job id, lease token) the caller still holds; lost ones are left alone."""

    @abc.abstractmethod
    async def complete_job(self, job: Job, outputs: Sequence[OutputFile], now: float) -> PhotoState | None:
        """Mark a leased job done and record its outputs; the photo's new state. None (nothing recorded) when the
        lease was lost or the photo deleted."""

    @abc.abstractmethod
    async def fail_job(self, job: Job, error: str, retry_at: float | None, now: float) -> PhotoState | None:
        """A leased job's attempt failed: pending again from `retry_at`, or dead-lettered ('failed') when retry_at is
        None. None when the lease was lost."""

    @abc.abstractmethod
    async def release_job(self, job: Job, now: float) -> PhotoState | None:
        """Give back a job interrupted by shutdown: runnable at once, its attempt refunded. None when lost."""

    @abc.abstractmethod
    async def reclaim_orphans(self, now: float) -> int:
        """At start-up: every job still marked processing belongs to a run that died; make it runnable now with its
        attempt refunded and its open history row closed as interrupted. The number of jobs reclaimed."""

    @abc.abstractmethod
    async def expired_leases(self, now: float) -> list[Job]:
        """Processing jobs whose lease ran out before `now`."""

    # -- jobs: the queue's reads and admin verbs ---------------------------------------------------------------

    @abc.abstractmethod
    async def next_runnable_job(self, now: float) -> NextJob | None:
        """The job the next claim would take, with its photo's size (for the memory budget)."""

    @abc.abstractmethod
    async def next_run_at(self) -> float | None:
        """The earliest run_at of a pending job."""

    @abc.abstractmethod
    async def unfinished_job_count(self) -> int:
        """Jobs pending or processing."""

    @abc.abstractmethod
    async def album_has_unfinished_jobs(self, album_id: int) -> bool:
        """Whether any job of the album's photos is pending or processing."""

    @abc.abstractmethod
    async def unfinished_jobs_by_kind(self) -> dict[str, int]:
        """Pending or processing jobs by kind."""

    @abc.abstractmethod
    async def jobs_until_album_done(self, album_id: int) -> dict[str, int]:
        """By kind, the jobs that finish before the album's last one can: every running job and every pending one up
        to the album's last in claim order; only its own running jobs when none is pending."""

    @abc.abstractmethod
    async def job_counts(self) -> dict[str, int]:
        """Jobs by status, every status present (0 when none)."""

    @abc.abstractmethod
    async def oldest_unfinished_job_created_at(self) -> float | None:
        """When the oldest pending or processing job was created."""

    @abc.abstractmethod
    async def list_jobs(self, status: Status | None, limit: int) -> list[Job]:
        """Jobs of one status in claim order; with None, every unfinished and failed job (running first)."""

    @abc.abstractmethod
    async def retry_photo(self, photo_id: int, now: float, max_attempts: int) -> PhotoState | None:
        """Queue again every failed part of a photo with fresh attempts. None when nothing of it has failed."""

    @abc.abstractmethod
    async def retry_all_failed(self, now: float, max_attempts: int) -> tuple[int, list[PhotoState]]:
        """retry_photo for every failed photo: (jobs queued, the photos' new states)."""

    @abc.abstractmethod
    async def clear_failed_jobs(self) -> int:
        """Delete the dead letter (failed jobs; their photos stay failed). How many were deleted."""

    @abc.abstractmethod
    async def prune_finished_jobs(self, older_than: float) -> int:
        """Delete complete jobs last updated before `older_than`; photos, outputs and history stay."""

    # -- maintenance: reprocess --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def reprocess_photos_page(self, after_id: int, limit: int, album_id: int | None) -> list[dict]:
        """A page of photos by id: id, album_id, width, height, both part statuses and their output rows as
        {name: {width, height, format, spec}}."""

    @abc.abstractmethod
    async def queue_outputs(
        self, parts: Sequence[tuple[int, JobKind, Sequence[str]]], now: float, max_attempts: int,
        dry_run: bool = False,
    ) -> tuple[list[QueueOutcome], list[PhotoState]]:
        """For each (photo id, kind, output names), have the photo's kind job render those outputs (never a second
        job: an unfinished one takes the names on). Per part the outcome and the names it added; and the states of
        the photos whose status changed. With `dry_run` the same decisions are made and nothing is written."""

    # -- maintenance: doctor -----------------------------------------------------------------------------------
    # `photoq doctor` runs beside a live server: it reads in pages, and every write re-checks what it acts on inside
    # one transaction that holds off other writers until the files are gone.

    @abc.abstractmethod
    async def doctor_photos_page(self, after_id: int, limit: int) -> list[dict]:
        """A page of photos by id: id, sha256, format, width, height, created_at, both part statuses, their outputs as
        {name: the format the file was written in (None when recorded before schema version 3)} and their output rows
        as {name: {format, width, height, created_at, source_sha256}}."""

    @abc.abstractmethod
    async def doctor_original_references(
        self, relpaths: Sequence[str], shas: Sequence[str]
    ) -> tuple[set[tuple[str, str]], set[str], set[str]]:
        """For the files of one originals folder: ((sha256, format) of photos with those hashes, staged paths among
        `relpaths`, staged sha256s among `shas`)."""

    @abc.abstractmethod
    async def doctor_existing_photo_ids(self, photo_ids: Sequence[int]) -> set[int]:
        """Those of `photo_ids` that exist."""

    @abc.abstractmethod
    async def doctor_remove_orphan_originals(
        self, candidates: Sequence[tuple[str, str | None, str | None]], remove: RemovePaths
    ) -> list[str]:
        """`candidates` are (relpath, sha256, format) of files nothing referenced. Re-checked and removed inside one
        write transaction; the relpaths removed."""

    @abc.abstractmethod
    async def doctor_remove_orphan_variant_dirs(
        self, candidates: Sequence[tuple[str, int | None]], remove: RemovePaths
    ) -> list[str]:
        """`candidates` are (relpath, photo id or None) of variant folders or stray files no photo owns. Re-checked
        and removed inside one write transaction; the relpaths removed."""

    @abc.abstractmethod
    async def doctor_requeue_missing_outputs(
        self, parts: Sequence[tuple[int, JobKind, Sequence[str]]], now: float, max_attempts: int
    ) -> list[tuple[int, JobKind]]:
        """For each (photo id, kind, missing output names): forget those output rows and have the kind's job render
        them again (a dead-lettered job too). Skips photos since deleted; the parts re-queued."""

    @abc.abstractmethod
    async def doctor_fail_missing_originals(
        self, photo_ids: Sequence[int], error: str, now: float, max_attempts: int
    ) -> list[int]:
        """Photos whose original is gone can never be processed: both parts and jobs failed with `error`, any open
        attempt closed. The photo ids marked (those still existing)."""

    # -- web sessions and one-time login codes (ids and codes arrive as SHA-256 hashes) ---------------------------

    @abc.abstractmethod
    async def insert_session(self, id_hash: str, now: float, expires_at: float) -> None:
        """A new session, last seen now."""

    @abc.abstractmethod
    async def get_session(self, id_hash: str) -> tuple[float, float, float] | None:
        """(created_at, last_seen_at, expires_at) of a session, or None."""

    @abc.abstractmethod
    async def touch_session(self, id_hash: str, now: float, expires_at: float) -> None:
        """Record a use of the session and its new expiry."""

    @abc.abstractmethod
    async def delete_session(self, id_hash: str) -> bool:
        """End one session; False when there was none."""

    @abc.abstractmethod
    async def delete_all_sessions(self) -> int:
        """End every session; how many there were."""

    @abc.abstractmethod
    async def insert_login_code(self, code_hash: str, now: float, expires_at: float) -> None:
        """A new one-time login code (expired ones are deleted on the way)."""

    @abc.abstractmethod
    async def redeem_login_code(self, code_hash: str, now: float) -> bool:
        """Delete the code; True when it existed and had not expired, so that each code works once."""

    @abc.abstractmethod
    async def delete_expired_sessions_and_codes(self, now: float) -> int:
        """Forget what has expired; how many rows went."""
