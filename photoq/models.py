"""Rows as frozen dataclasses and statuses as str enums: the shapes that cross the database boundary."""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum


class Status(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETE = "complete"
    FAILED = "failed"


class JobKind(StrEnum):
    THUMBNAIL = "thumbnail"
    VARIANT = "variant"


# Lower runs first: every thumbnail in the queue before any display variant.
PRIORITY = {JobKind.THUMBNAIL: 0, JobKind.VARIANT: 10}


MAX_ALBUM_NAME = 200
# Control characters: NUL, escapes, tabs and line breaks (also U+2028/U+2029), unpaired surrogates.
CONTROL_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
# Invisible ones: format characters (bidi overrides and isolates, which can make "gpj.exe" display as "exe.jpg";
# zero-width spaces and joiners; soft hyphens) and private-use characters, which every program draws differently.
INVISIBLE_CATEGORIES = frozenset({"Cf", "Co"})


def clean_text(raw: str) -> str:
    """A name a client chose (an album's, a file's) as photoq keeps and shows it: without control or invisible
    characters, and without surrounding whitespace. The one cleaning rule for every such name."""
    unshown = CONTROL_CATEGORIES | INVISIBLE_CATEGORIES
    return "".join(c for c in raw if unicodedata.category(c) not in unshown).strip()


def has_control_characters(raw: str) -> bool:
    return any(unicodedata.category(c) in CONTROL_CATEGORIES for c in raw)


def clean_album_name(raw: object) -> str:
    """The album name as stored (clean_text); ValueError (a sentence for people) when it is not acceptable.

    A name is typed on purpose, so a control character in it is a client's bug or an attack and is refused; invisible
    characters come along unnoticed with pasted text, so they are removed, as from filenames."""
    if not isinstance(raw, str):
        raise ValueError("The album needs a non-empty name.")
    if has_control_characters(raw):
        raise ValueError("The album name may not contain control characters or invalid text.")
    name = clean_text(raw)
    if not name:
        raise ValueError("The album needs a non-empty name (invisible characters do not count).")
    if len(name) > MAX_ALBUM_NAME:
        raise ValueError(f"The album name is longer than {MAX_ALBUM_NAME} characters.")
    return name


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ISO 8601 UTC string (the API's time format)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def original_version(sha256: str) -> str:
    """The version a photo's original URL carries: its content, so it can be cached for good."""
    return sha256[:16]


def output_version(sha256: str, written_at: float) -> str:
    """The version an output's URL carries: the original it shows and when it was written, so a re-render (or any
    other picture) never hides behind a cached one."""
    return f"{sha256[:12]}-{round(written_at * 1000):x}"


@dataclass(frozen=True)
class Album:
    id: int
    name: str
    created_at: float
    photo_count: int = 0
    processing: bool = False
    cover_photo_id: int | None = None  # chosen by the user; None: the first photo with thumbnails


@dataclass(frozen=True)
class Photo:
    id: int
    album_id: int
    filename: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    content_type: str
    taken_at: str | None
    exif_json: str
    processing_status: Status
    thumbnail_status: Status
    variant_status: Status
    error: str | None
    created_at: float
    completed_at: float | None
    attempts: int = 0
    last_attempt: float | None = None
    thumbhash: str | None = None  # base64 ThumbHash: a placeholder painted until the thumbnail loads

    @property
    def exif(self) -> dict:
        return json.loads(self.exif_json or "{}")


@dataclass(frozen=True)
class PhotoState:
    """What an SSE `photo` event says about a photo."""

    id: int
    album_id: int
    processing_status: Status
    thumbnail_status: Status
    variant_status: Status
    error: str | None
    thumbhash: str | None = None

    def as_event(self) -> dict:
        return {
            "id": self.id,
            "album_id": self.album_id,
            "processing_status": str(self.processing_status),
            "thumbnail_status": str(self.thumbnail_status),
            "variant_status": str(self.variant_status),
            "error": self.error,
            "thumbhash": self.thumbhash,
        }


@dataclass(frozen=True)
class Job:
    id: int
    photo_id: int
    kind: JobKind
    priority: int
    status: Status
    attempts: int
    max_attempts: int
    run_at: float
    lease_expires_at: float | None
    last_error: str | None
    created_at: float
    outputs: tuple[str, ...] | None = None  # the output names to render; None renders every output of its kind
    lease_token: str | None = None  # written by the claim that leased it; only that lease may record its result


@dataclass(frozen=True)
class ClaimedJob:
    """A job leased to a worker, with what the worker needs to find the photo's files."""

    job: Job
    album_id: int
    sha256: str
    format: str
    width: int  # the photo's displayed size, for the memory estimate
    height: int


@dataclass(frozen=True)
class NextJob:
    """The job the next claim would take, with its photo's displayed size and format."""

    id: int
    kind: JobKind
    width: int
    height: int
    format: str
    sha256: str = ""  # finds the original, whose header the memory estimate reads


@dataclass(frozen=True)
class OutputFile:
    name: str
    width: int
    height: int
    size_bytes: int
    thumbhash: str | None = None  # set on the smallest thumbnail; stored on the photo, not in outputs
    format: str | None = None  # the format it was written in (None: recorded before schema version 3)
    spec: str | None = None  # imaging.spec_fingerprint of what rendered it (None: before schema version 3)
    created_at: float | None = None  # when it was written (as read back from the database)
    source_sha256: str | None = None  # the original it was rendered from (None: before schema version 4)


@dataclass(frozen=True)
class Attempt:
    job_id: int
    kind: str
    attempt: int
    started_at: float
    finished_at: float | None
    outcome: str | None
    error: str | None
    retry_at: float | None


@dataclass(frozen=True)
class NewPhoto:
    """An upload that is stored and probed, ready for its row and jobs."""

    filename: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    format: str
    content_type: str
    taken_at: str | None
    exif: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Batch:
    """An album's batch: the photos that entered its queue since its last idle moment (uploads, retries,
    reprocessing), so that every page, tab and device shows the same "n of m"."""

    album_id: int
    album_name: str
    started_at: float
    total: int
    complete: int
    failed: int

    @property
    def done(self) -> int:
        return self.complete + self.failed

    @property
    def unfinished(self) -> int:
        return self.total - self.done

    def as_dict(self) -> dict:
        return {"album_id": self.album_id, "album_name": self.album_name, "started_at": iso(self.started_at),
                "total": self.total, "done": self.done, "complete": self.complete, "failed": self.failed,
                "finished": self.unfinished == 0}


@dataclass(frozen=True)
class Stats:
    pending: int = 0
    processing: int = 0
    complete: int = 0
    failed: int = 0
    eta_seconds: int | None = None  # see eta.py: 0 when nothing is left, None when it cannot be said (yet)
    album_id: int | None = None  # counted over one album: `batch` is its batch (None before its first upload)
    batch: Batch | None = None
    batches: tuple[Batch, ...] = ()  # counted over every album: the batches still unfinished

    @property
    def total(self) -> int:
        return self.pending + self.processing + self.complete + self.failed

    def as_dict(self) -> dict:
        return {
            "pending": self.pending,
            "processing": self.processing,
            "complete": self.complete,
            "failed": self.failed,
            "total": self.total,
            "eta_seconds": self.eta_seconds,
            **({"batch": self.batch.as_dict() if self.batch else None} if self.album_id is not None
               else {"batches": [b.as_dict() for b in self.batches]}),
        }


@dataclass(frozen=True)
class Node:
    """A running photoq in the nodes registry (cluster mode): who it is and what it last said in its heartbeat."""

    id: str
    host: str
    port: int
    role: str  # all | web | worker
    workers: int  # image workers it runs (0 on a web node)
    busy: int  # of those, how many were running a job
    capacity: str | None  # JSON: its measured throughput (eta.ThroughputMeter.capacity), None until measured
    started_at: float
    last_seen: float
