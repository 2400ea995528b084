"""A ZIP archive written front to back, for streaming: stored (uncompressed) entries, ZIP64 where needed.

Sans-I/O: `ZipPlan` lays the archive out from the entries' names and sizes (so its total length is known before the
first byte, and a response can carry Content-Length), and hands out the bytes that go around each file's data: a
local header before, a data descriptor after (the CRC-32 is only known once the data has gone by), and the central
directory at the end. The caller streams each file's bytes in between and feeds them to the entry's CRC. Memory is
one small record per entry, never file data.

Photos are already compressed (JPEG, HEIC, WebP...): deflating them would cost a Pi's CPU for a few percent, so every
entry is stored. ZIP64 (APPNOTE 6.3.x, section 4.3.9 and 4.5.3) is used only when a limit of the classic format is
passed: an entry of 4 GiB or more, an offset past 4 GiB, or more than 65 535 entries.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

MAX_32 = 0xFFFFFFFF
MAX_16 = 0xFFFF
UTF8_FLAG = 1 << 11
DESCRIPTOR_FLAG = 1 << 3
VERSION_DEFAULT = 20
VERSION_ZIP64 = 45
MADE_BY_UNIX = (3 << 8) | VERSION_ZIP64
FILE_MODE = 0o100644 << 16  # a regular file, rw-r--r--, in the external attributes

LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHII")
DESCRIPTOR_32 = struct.Struct("<IIII")
DESCRIPTOR_64 = struct.Struct("<IIQQ")
END_64 = struct.Struct("<IQHHIIQQQQ")
LOCATOR_64 = struct.Struct("<IIQI")
END = struct.Struct("<IHHHHIIH")


def dos_time(moment: datetime) -> tuple[int, int]:
    """(time, date) in MS-DOS format; clamped to the years it can say (1980-2107)."""
    year = min(max(moment.year, 1980), 2107)
    if year != moment.year:
        moment = datetime(year, 1 if year == 1980 else 12, 1 if year == 1980 else 31, tzinfo=moment.tzinfo)
    return ((moment.hour << 11) | (moment.minute << 5) | (moment.second // 2),
            ((year - 1980) << 9) | (moment.month << 5) | moment.day)


@dataclass
class ZipEntry:
    name: str
    size: int
    modified: datetime
    offset: int = 0
    crc: int = 0
    _seen: int = field(default=0, repr=False)

    @property
    def encoded_name(self) -> bytes:
        return self.name.encode("utf-8")

    @property
    def large(self) -> bool:
        """Sizes in the ZIP64 fields: in its local header's extra field and an 8-byte data descriptor."""
        return self.size >= MAX_32

    def update(self, chunk: bytes) -> None:
        self.crc = zlib.crc32(chunk, self.crc)
        self._seen += len(chunk)

    @property
    def complete(self) -> bool:
        return self._seen == self.size

    # -- the bytes around its data -----------------------------------------------------------------------------

    def local_header(self) -> bytes:
        name = self.encoded_name
        # Sizes and CRC follow in the data descriptor (bit 3). A large entry says so with a ZIP64 extra field,
        # so that a reader takes its descriptor's sizes as 8 bytes each.
        extra = struct.pack("<HHQQ", 0x0001, 16, 0, 0) if self.large else b""
        sizes = MAX_32 if self.large else 0
        mtime, mdate = dos_time(self.modified)
        return LOCAL_HEADER.pack(
            0x04034B50, VERSION_ZIP64 if self.large else VERSION_DEFAULT, UTF8_FLAG | DESCRIPTOR_FLAG, 0,
            mtime, mdate, 0, sizes, sizes, len(name), len(extra),
        ) + name + extra

    def descriptor(self) -> bytes:
        if self.large:
            return DESCRIPTOR_64.pack(0x08074B50, self.crc, self.size, self.size)
        return DESCRIPTOR_32.pack(0x08074B50, self.crc, self.size, self.size)

    def _central_extra(self) -> tuple[bytes, int, int]:
        """The ZIP64 extra field of its central record: only the values that do not fit, in the spec's order."""
        values = []
        size32 = self.size
        offset32 = self.offset
        if self.size >= MAX_32:
            values += [self.size, self.size]
            size32 = MAX_32
        if self.offset >= MAX_32:
            values.append(self.offset)
            offset32 = MAX_32
        if not values:
            return b"", size32, offset32
        return struct.pack(f"<HH{len(values)}Q", 0x0001, 8 * len(values), *values), size32, offset32

    def central_record(self) -> bytes:
        name = self.encoded_name
        extra, size32, offset32 = self._central_extra()
        needs = VERSION_ZIP64 if extra or self.large else VERSION_DEFAULT
        mtime, mdate = dos_time(self.modified)
        return CENTRAL_HEADER.pack(
            0x02014B50, MADE_BY_UNIX, needs, UTF8_FLAG | DESCRIPTOR_FLAG, 0, mtime, mdate,
            self.crc, size32, size32, len(name), len(extra), 0, 0, 0, FILE_MODE, offset32,
        ) + name + extra

    def length(self) -> int:
        """Bytes of its local header, data and descriptor."""
        return len(self.local_header()) + self.size + (DESCRIPTOR_64.size if self.large else DESCRIPTOR_32.size)


class ZipPlan:
    """The layout of one archive. Give it every entry first, then stream: for each entry its `local_header()`, its
    data (feeding `entry.update`), its `descriptor()`; then `end()`."""

    def __init__(self, entries: list[ZipEntry]):
        self.entries = entries
        offset = 0
        for entry in entries:
            entry.offset = offset
            offset += entry.length()
        self.directory_offset = offset
        # The central records' lengths do not depend on CRCs, so the total is known before any data is read.
        self.directory_size = sum(len(e.central_record()) for e in entries)

    @property
    def zip64(self) -> bool:
        return (len(self.entries) > MAX_16 or self.directory_offset >= MAX_32 or self.directory_size >= MAX_32
                or any(e.large or e.offset >= MAX_32 for e in self.entries))

    def end_length(self) -> int:
        return self.directory_size + (END_64.size + LOCATOR_64.size if self.zip64 else 0) + END.size

    @property
    def total_size(self) -> int:
        return self.directory_offset + self.end_length()

    def end(self) -> bytes:
        """The central directory and the end records; call once every entry's data has gone by."""
        unfinished = [e.name for e in self.entries if not e.complete]
        if unfinished:
            raise ValueError(f"entries not streamed in full: {unfinished[:3]}")
        parts = [e.central_record() for e in self.entries]
        count = len(self.entries)
        if self.zip64:
            end64_offset = self.directory_offset + self.directory_size
            parts.append(END_64.pack(0x06064B50, END_64.size - 12, MADE_BY_UNIX, VERSION_ZIP64, 0, 0,
                                     count, count, self.directory_size, self.directory_offset))
            parts.append(LOCATOR_64.pack(0x07064B50, 0, end64_offset, 1))
        parts.append(END.pack(
            0x06054B50, 0, 0, min(count, MAX_16), min(count, MAX_16),
            min(self.directory_size, MAX_32), min(self.directory_offset, MAX_32), 0,
        ))
        return b"".join(parts)


def unique_names(names: list[str]) -> list[str]:
    """Archive names for files: no folders, no empty or dot names, and no two alike ("a.jpg", "a (2).jpg")."""
    taken: set[str] = set()
    result = []
    for raw in names:
        name = raw.replace("/", "_").replace("\\", "_").strip() or "photo"
        if name in (".", ".."):
            name = "photo"
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext = name, ""
        candidate, n = name, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"
        taken.add(candidate.casefold())
        result.append(candidate)
    return result


def modified_time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
