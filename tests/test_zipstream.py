"""The streaming ZIP writer, checked by Python's own zipfile: CRCs, names, times, and the ZIP64 rules."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from datetime import datetime, timezone

import pytest

from photoq.zipstream import MAX_16, MAX_32, ZipEntry, ZipPlan, dos_time, unique_names

WHEN = datetime(2024, 7, 14, 18, 30, 42, tzinfo=timezone.utc)


def write_archive(files: list[tuple[str, bytes]], out=None) -> bytes:
    out = out if out is not None else io.BytesIO()
    entries = [ZipEntry(name, len(data), WHEN) for name, data in files]
    plan = ZipPlan(entries)
    for entry, (_, data) in zip(entries, files):
        out.write(entry.local_header())
        for start in range(0, len(data), 7):  # in pieces, as a stream would
            entry.update(data[start:start + 7])
            out.write(data[start:start + 7])
        out.write(entry.descriptor())
    out.write(plan.end())
    written = out.getvalue()
    assert len(written) == plan.total_size  # the Content-Length promised before the first byte
    return written


def test_a_small_archive_reads_back_with_every_byte_and_crc():
    files = [("IMG_0001.jpg", os.urandom(1000)), ("été à Paris.png", b"\x89PNG" + os.urandom(50)), ("empty.gif", b"")]
    archive = zipfile.ZipFile(io.BytesIO(write_archive(files)))
    assert archive.testzip() is None
    assert [i.filename for i in archive.infolist()] == [name for name, _ in files]
    for info, (_, data) in zip(archive.infolist(), files):
        assert info.compress_type == zipfile.ZIP_STORED
        assert info.file_size == len(data) and info.CRC == zlib.crc32(data)
        assert info.date_time == (2024, 7, 14, 18, 30, 42)
        assert archive.read(info) == data


def test_no_zip64_records_when_nothing_needs_them():
    data = write_archive([("a.jpg", b"x" * 10)])
    assert b"PK\x06\x06" not in data and b"PK\x06\x07" not in data


def test_more_than_65535_entries_use_the_zip64_end_records():
    count = MAX_16 + 10
    files = [(f"p{i:05}.jpg", bytes([i % 256])) for i in range(count)]
    data = write_archive(files)
    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data
    archive = zipfile.ZipFile(io.BytesIO(data))
    infos = archive.infolist()
    assert len(infos) == count
    assert archive.read(infos[-1]) == bytes([(count - 1) % 256])
    assert archive.testzip() is None


def test_a_file_over_4_gib_and_the_entry_after_it(tmp_path):
    """A sparse file: the 4 GiB of zeros are never written, only their CRC computed."""
    big = MAX_32 + 5
    entries = [ZipEntry("big.tif", big, WHEN), ZipEntry("after.jpg", 3, WHEN)]
    plan = ZipPlan(entries)
    assert plan.zip64 and entries[1].offset > MAX_32
    path = tmp_path / "big.zip"
    zeros = bytes(1 << 22)
    with open(path, "wb") as out:
        out.write(entries[0].local_header())
        remaining = big
        while remaining:
            step = min(len(zeros), remaining)
            entries[0].update(zeros[:step])
            remaining -= step
        out.seek(big, os.SEEK_CUR)  # leaves a hole of zeros
        out.write(entries[0].descriptor())
        out.write(entries[1].local_header())
        entries[1].update(b"abc")
        out.write(b"abc")
        out.write(entries[1].descriptor())
        out.write(plan.end())
    assert path.stat().st_size == plan.total_size
    with zipfile.ZipFile(path) as archive:
        first, second = archive.infolist()
        assert first.file_size == big and first.CRC == entries[0].crc
        assert second.header_offset == entries[1].offset
        assert archive.read(second) == b"abc"


def test_the_end_refuses_an_archive_whose_data_did_not_all_go_by():
    entry = ZipEntry("a.jpg", 10, WHEN)
    plan = ZipPlan([entry])
    entry.update(b"12345")
    with pytest.raises(ValueError):
        plan.end()


def test_names_are_flat_and_unique():
    assert unique_names(["a.jpg", "A.JPG", "a.jpg", "../x/y.png", "", "..", "noext", "noext"]) == [
        "a.jpg", "A (2).JPG", "a (3).jpg", ".._x_y.png", "photo", "photo (2)", "noext", "noext (2)"]


def test_dos_times_are_clamped_to_what_the_format_can_say():
    assert dos_time(datetime(1970, 1, 1)) == dos_time(datetime(1980, 1, 1))
    time_, date = dos_time(datetime(2024, 2, 29, 23, 59, 58))
    assert (date >> 9) + 1980 == 2024 and (date >> 5) & 15 == 2 and date & 31 == 29
    assert time_ >> 11 == 23 and (time_ >> 5) & 63 == 59 and (time_ & 31) * 2 == 58
