"""The HTTP side of uploads: a multipart body read into files for ingest, and ingest's outcomes as the contract's
statuses and bodies (for POST /api/albums/{id}/photos and for a finished tus upload alike)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncGenerator

from aiohttp import BodyPartReader, MultipartReader
from aiohttp.http_exceptions import HttpProcessingError

from ..config import UploadSettings
from ..errors import BadRequest, PayloadTooLarge
from ..ingest import CHUNK_BYTES, Accepted, FileOutcome, IncomingFile, Rejected, display_filename, request_too_large

# How a sentence about several refused files names each kind of refusal (singular, plural).
REFUSALS = {
    "too_large": ("is too large", "are too large"),
    "too_many_pixels": ("has too many pixels", "have too many pixels"),
    "unsupported_media_type": ("is not a supported image", "are not supported images"),
    "corrupt_image": ("is corrupt", "are corrupt"),
    "empty_file": ("is empty", "are empty"),
    "unexpected_field": ("is not a part named 'file'", "are not parts named 'file'"),
    "missing_filename": ("has no filename", "have no filename"),
    "bad_multipart": ("is not a file part", "are not file parts"),
}


class MultipartFiles:
    """The parts of one upload request, in order, as ingest takes them; counts every byte read against the
    request's limit, those of refused parts too."""

    def __init__(self, reader: MultipartReader, limits: UploadSettings):
        self.reader = reader
        self.limits = limits
        self.bytes_read = 0

    async def parts(self) -> AsyncGenerator[IncomingFile | Rejected, None]:
        count = 0
        while (part := await self._next_part(self.reader)) is not None:
            count += 1
            if count > self.limits.max_files_per_request:
                raise PayloadTooLarge(f"At most {self.limits.max_files_per_request} files can be sent in one request.",
                                      code="too_many_files")
            if not isinstance(part, BodyPartReader):
                yield Rejected(display_filename(None), BadRequest("Nested multipart bodies are not accepted.",
                                                                  code="bad_multipart"))
            elif part.name != "file":
                yield Rejected(display_filename(part.filename), BadRequest("Only parts named 'file' are accepted.",
                                                                           code="unexpected_field"))
            elif not part.filename:
                yield Rejected(display_filename(None), BadRequest("Each file part needs a filename.",
                                                                  code="missing_filename"))
            else:
                yield IncomingFile(part.filename, PartChunks(self, part))
            await self._drain(part)  # what ingest left unread (a refused file): counted, not buffered

    async def read_chunk(self, part: BodyPartReader) -> bytes:
        if part.at_eof():
            return b""
        try:
            chunk = await part.read_chunk(CHUNK_BYTES)
        except (ValueError, AssertionError) as exc:  # the body ended inside the part, or its framing is broken
            raise BadRequest(f"The multipart body is malformed ({exc}).", code="bad_multipart") from None
        self.bytes_read += len(chunk)
        if self.bytes_read > self.limits.max_request_bytes:
            raise request_too_large(self.limits.max_request_bytes)
        return chunk

    @staticmethod
    async def _next_part(reader: MultipartReader) -> MultipartReader | BodyPartReader | None:
        try:
            return await reader.next()
        except HttpProcessingError:  # a part's headers: invalid characters, too long, a duplicate
            raise BadRequest("The multipart body is malformed (a part's headers are invalid or too long).",
                             code="bad_multipart") from None
        except (ValueError, AssertionError, KeyError) as exc:
            raise BadRequest(f"The multipart body is malformed ({exc}).", code="bad_multipart") from None

    async def _drain(self, part: MultipartReader | BodyPartReader) -> None:
        if isinstance(part, MultipartReader):
            while (inner := await self._next_part(part)) is not None:
                await self._drain(inner)
            return
        while await self.read_chunk(part):
            pass


class PartChunks:
    """One part's bytes, chunk by chunk, read through its request's byte count."""

    def __init__(self, files: MultipartFiles, part: BodyPartReader):
        self.files = files
        self.part = part

    def __aiter__(self) -> PartChunks:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.files.read_chunk(self.part)
        if not chunk:
            raise StopAsyncIteration
        return chunk


# -- outcomes as answers --------------------------------------------------------------------------------------------


def outcome_entry(outcome: FileOutcome) -> dict:
    """A file's entry in an upload response (and in a tus upload's status)."""
    if isinstance(outcome, Accepted):
        return {"filename": outcome.filename, "status": "pending", "id": outcome.photo_id}
    if isinstance(outcome, Rejected):
        return {"filename": outcome.filename, "status": "rejected", "error": outcome.error.code,
                "message": outcome.error.message}
    return {"filename": outcome.filename, "status": "duplicate", "duplicate_of": outcome.duplicate_of}


def outcome_status(outcome: FileOutcome) -> int:
    """The status that answers one file: 202 accepted, 200 already there, the refusal's own status."""
    if isinstance(outcome, Accepted):
        return 202
    if isinstance(outcome, Rejected):
        return outcome.error.status
    return 200


def upload_answer(outcomes: list[FileOutcome]) -> tuple[int, dict]:
    """(status, body) of a multipart upload: 202 when a file was accepted, 200 when every file was there already;
    when every file was refused, their common status (400 when they differ) and the contract's top-level error."""
    if not outcomes:
        raise BadRequest("The request has no file parts; send one or more parts named 'file'.", code="no_files")
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    accepted = sum(1 for o in outcomes if isinstance(o, Accepted))
    body: dict = {"accepted": accepted, "rejected": len(rejected), "photos": [outcome_entry(o) for o in outcomes]}
    if accepted:
        return 202, body
    if len(rejected) < len(outcomes):
        return 200, body  # nothing new, but nothing refused: every file was already in the album
    statuses = {o.error.status for o in rejected}
    body = {"error": rejected[0].error.code, "message": all_rejected_message(rejected), **body}
    return (statuses.pop() if len(statuses) == 1 else 400), body


def all_rejected_message(rejected: list[Rejected]) -> str:
    """One sentence covering every refusal: the file's own message for one file, else how many of each kind."""
    if len(rejected) == 1:
        return rejected[0].error.message
    counts = Counter(o.error.code for o in rejected)  # in order of first appearance
    parts = []
    for code, count in counts.items():
        singular, plural = REFUSALS.get(code, (f"was refused ({code})", f"were refused ({code})"))
        parts.append(f"{count} {singular if count == 1 else plural}")
    return f"All {len(rejected)} files were rejected: {', '.join(parts)}."
