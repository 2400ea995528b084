"""Rows to models, and the column lists and names the statements share."""

from __future__ import annotations

import json
from typing import Any, Protocol

from ..models import Album, Job, JobKind, Photo, PhotoState, Status


class Row(Protocol):
    """A row read by column name: sqlite3.Row, asyncpg.Record."""

    def __getitem__(self, key: str, /) -> Any: ...

KIND_COLUMN = {JobKind.THUMBNAIL: "thumbnail_status", JobKind.VARIANT: "variant_status"}
OTHER_KIND_COLUMN = {JobKind.THUMBNAIL: "variant_status", JobKind.VARIANT: "thumbnail_status"}
PHOTO_STATE_COLUMNS = "id, album_id, processing_status, thumbnail_status, variant_status, error, thumbhash"
JOB_COLUMNS = (
    "id, photo_id, kind, priority, status, attempts, max_attempts, run_at, lease_expires_at, last_error, created_at, "
    "outputs, lease_token"
)
UNFINISHED = "('pending', 'processing')"


def photo_state(row: Row) -> PhotoState:
    return PhotoState(
        id=row["id"],
        album_id=row["album_id"],
        processing_status=Status(row["processing_status"]),
        thumbnail_status=Status(row["thumbnail_status"]),
        variant_status=Status(row["variant_status"]),
        error=row["error"],
        thumbhash=row["thumbhash"],
    )


def job(row: Row) -> Job:
    return Job(
        id=row["id"],
        photo_id=row["photo_id"],
        kind=JobKind(row["kind"]),
        priority=row["priority"],
        status=Status(row["status"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=row["run_at"],
        lease_expires_at=row["lease_expires_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        outputs=output_names(row["outputs"]),
        lease_token=row["lease_token"],
    )


def output_names(raw: str | None) -> tuple[str, ...] | None:
    """jobs.outputs: a JSON array of output names, or NULL for every output of the job's kind."""
    return None if raw is None else tuple(json.loads(raw))


def photo(row: Row) -> Photo:
    return Photo(
        id=row["id"],
        album_id=row["album_id"],
        filename=row["filename"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        width=row["width"],
        height=row["height"],
        format=row["format"],
        content_type=row["content_type"],
        taken_at=row["taken_at"],
        exif_json=row["exif"],
        processing_status=Status(row["processing_status"]),
        thumbnail_status=Status(row["thumbnail_status"]),
        variant_status=Status(row["variant_status"]),
        error=row["error"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        attempts=row["attempts"],
        last_attempt=row["last_attempt"],
        thumbhash=row["thumbhash"],
    )


def album(row: Row) -> Album:
    return Album(
        id=row["id"],
        name=row["name"],
        created_at=row["created_at"],
        photo_count=row["photo_count"],
        processing=bool(row["processing"]),
        cover_photo_id=row["cover_photo_id"],
    )


def chunks(items: list, size: int = 500) -> list[list]:
    """Slices small enough for one IN (...) list."""
    return [items[i:i + size] for i in range(0, len(items), size)]
