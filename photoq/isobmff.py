"""The header of a HEIF (HEIC) or AVIF file, read without decoding it and without reading its coded image data.

Both are ISO base media files: a ``meta`` box near the start describes the items (the primary image, its tiles, an
Exif block), where their bytes lie (``iloc``) and their properties (``ispe`` size, ``clap`` crop, ``irot`` rotation,
``imir`` mirroring). libheif and libavif read the whole file into memory even to report a size; this reads the
``meta`` box and the Exif block only, so an upload can be checked from its header like every other format.

Pure and synchronous: the standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

# An iPhone's meta box is a few kilobytes (a 48 MP grid of 512 px tiles: under 20 KB); anything far larger is not
# a photo's header.
MAX_META_BYTES = 16 * 1024 * 1024
MAX_EXIF_BYTES = 1024 * 1024  # a JPEG can carry at most 64 KiB of EXIF
MAX_TOP_LEVEL_BOXES = 1024


class HeaderError(ValueError):
    """The header is malformed or the file is cut off."""


class NoStillImage(HeaderError):
    """A well-formed ISO media file without a still image (an image sequence or a video)."""


@dataclass(frozen=True)
class Crop:
    """clap: the picture is cut to this size (rounded as libheif rounds)."""
    width: int
    height: int


@dataclass(frozen=True)
class Rotation:
    """irot: quarter turns anticlockwise (0-3)."""
    quarter_turns: int


@dataclass(frozen=True)
class Mirror:
    """imir: the axis mirrored about (0 vertical, 1 horizontal)."""
    axis: int


Transform = Crop | Rotation | Mirror


@dataclass(frozen=True)
class PrimaryItem:
    item_type: bytes  # b"hvc1", b"av01", b"grid", ...
    size: tuple[int, int]  # ispe: the size the codec produces, before any transform
    transforms: tuple[Transform, ...]  # in the order the item's associations list them
    exif: bytes | None  # the TIFF-structured Exif data (possibly after b"Exif\0\0"), without the item's offset word
    input_pixels: int = 0  # of the images a derived image (a grid of tiles) is made of, which are decoded too

    def transformed_size(self) -> tuple[int, int]:
        """The size after every transform, as libheif hands out the decoded image."""
        width, height = self.size
        for transform in self.transforms:
            if isinstance(transform, Crop):  # never larger than what it crops
                width, height = min(width, transform.width), min(height, transform.height)
            elif isinstance(transform, Rotation) and transform.quarter_turns in (1, 3):
                width, height = height, width
        return width, height

    def rotation_and_mirror(self) -> tuple[int, int | None]:
        """(irot angle in quarter turns anticlockwise, imir axis or None)."""
        angle: int = 0
        axis: int | None = None
        for transform in self.transforms:
            if isinstance(transform, Rotation):
                angle = transform.quarter_turns
            elif isinstance(transform, Mirror):
                axis = transform.axis
        return angle, axis


def read_primary_item(fp: BinaryIO) -> PrimaryItem:
    """Read the primary image's header from an open HEIF/AVIF file. Raises HeaderError (or NoStillImage)."""
    file_size = os.fstat(fp.fileno()).st_size
    meta = _Meta(_read_meta_box(fp, file_size))
    primary = meta.primary_item_id()
    locations = meta.item_locations()
    for item_id, location in locations.items():
        if location.ends_after(file_size):
            raise HeaderError(f"the file is cut off: item {item_id}'s data runs past its end")
    item_types = meta.item_types()
    if primary not in item_types:
        raise HeaderError(f"the primary item {primary} is not described")
    size, transforms = meta.properties_of(primary)
    input_pixels = 0
    for from_id, to_ids in meta.references(b"dimg"):
        if from_id == primary:
            for input_id in to_ids:
                width, height = meta.properties_of(input_id)[0]
                input_pixels += width * height
    exif = None
    for item_id in meta.references_to(b"cdsc", primary):
        if item_types.get(item_id) == b"Exif" and item_id in locations:
            exif = _exif_payload(meta.item_data(fp, locations[item_id], MAX_EXIF_BYTES))
            break
    return PrimaryItem(item_types[primary], size, transforms, exif, input_pixels)


def _exif_payload(data: bytes | None) -> bytes | None:
    # An Exif item starts with a 32-bit offset from its end to the TIFF header.
    if data is None or len(data) < 4:
        return None
    start = 4 + int.from_bytes(data[:4], "big")
    return data[start:] if start < len(data) else None


# --------------------------------------------------------------------------- boxes


def _read_meta_box(fp: BinaryIO, file_size: int) -> bytes:
    """The payload of the top-level ``meta`` box, walking the box headers before it without reading their data."""
    position = 0
    for _ in range(MAX_TOP_LEVEL_BOXES):
        if position >= file_size:
            break
        fp.seek(position)
        header = fp.read(16)
        if len(header) < 8:
            raise HeaderError("the file is cut off inside a box header")
        size, box_type, header_size = int.from_bytes(header[:4], "big"), header[4:8], 8
        if size == 1:
            if len(header) < 16:
                raise HeaderError("the file is cut off inside a box header")
            size, header_size = int.from_bytes(header[8:16], "big"), 16
        elif size == 0:  # the last box: it runs to the end of the file
            size = file_size - position
        if size < header_size:
            raise HeaderError(f"the {box_type!r} box declares an impossible size")
        if position + size > file_size:
            raise HeaderError(f"the file is cut off inside its {box_type!r} box")
        if box_type == b"meta":
            if size > MAX_META_BYTES:
                raise HeaderError("the meta box is implausibly large")
            fp.seek(position + header_size)
            return fp.read(size - header_size)
        position += size
    raise NoStillImage("the file has no image items (no meta box)")


class _Reader:
    """Big-endian fields of a byte range; any read past its end is a HeaderError."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None):
        self.data, self.pos, self.end = data, start, len(data) if end is None else end

    def uint(self, size: int) -> int:
        if size == 0:
            return 0
        if self.pos + size > self.end:
            raise HeaderError("a box is shorter than its fields")
        value = int.from_bytes(self.data[self.pos:self.pos + size], "big")
        self.pos += size
        return value

    def fourcc(self) -> bytes:
        value = self.uint(4)
        return value.to_bytes(4, "big")

    def version_and_flags(self) -> tuple[int, int]:
        word = self.uint(4)
        return word >> 24, word & 0xFFFFFF


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in ``data[start:end]``."""
    position = start
    while position + 8 <= end:
        size, header_size = int.from_bytes(data[position:position + 4], "big"), 8
        box_type = data[position + 4:position + 8]
        if size == 1:
            if position + 16 > end:
                raise HeaderError("a box header is cut off")
            size, header_size = int.from_bytes(data[position + 8:position + 16], "big"), 16
        elif size == 0:
            size = end - position
        if size < header_size or position + size > end:
            raise HeaderError(f"the {box_type!r} box does not fit in its parent")
        yield box_type, position + header_size, position + size
        position += size


@dataclass(frozen=True)
class _Location:
    construction_method: int  # 0: file offsets, 1: offsets into the idat box
    external: bool  # data_reference_index != 0: the data lives in another file
    extents: tuple[tuple[int, int], ...]  # (absolute offset, length); length 0 means "to the end"

    def ends_after(self, file_size: int) -> bool:
        if self.construction_method != 0 or self.external:
            return False
        return any(offset + length > file_size or offset > file_size for offset, length in self.extents)


class _Meta:
    def __init__(self, payload: bytes):
        self.data = payload
        self._properties: tuple[list[tuple[bytes, int, int]], dict[int, list[int]]] | None = None
        self.children: dict[bytes, tuple[int, int]] = {}
        for box_type, start, end in _boxes(payload, 4, len(payload)):  # meta is a full box
            self.children.setdefault(box_type, (start, end))

    def _reader(self, box_type: bytes) -> _Reader | None:
        span = self.children.get(box_type)
        return _Reader(self.data, *span) if span else None

    def primary_item_id(self) -> int:
        reader = self._reader(b"pitm")
        if reader is None:
            raise HeaderError("there is no primary item (no pitm box)")
        version, _ = reader.version_and_flags()
        return reader.uint(2 if version == 0 else 4)

    def item_types(self) -> dict[int, bytes]:
        reader = self._reader(b"iinf")
        if reader is None:
            raise HeaderError("there is no item information (no iinf box)")
        version, _ = reader.version_and_flags()
        reader.uint(2 if version == 0 else 4)  # entry count; the boxes themselves are what counts
        types = {}
        for box_type, start, end in _boxes(self.data, reader.pos, reader.end):
            if box_type != b"infe":
                continue
            entry = _Reader(self.data, start, end)
            entry_version, _ = entry.version_and_flags()
            if entry_version < 2:  # versions 0 and 1 describe files, not images
                continue
            item_id = entry.uint(2 if entry_version == 2 else 4)
            entry.uint(2)  # protection index
            types[item_id] = entry.fourcc()
        return types

    def item_locations(self) -> dict[int, _Location]:
        reader = self._reader(b"iloc")
        if reader is None:
            raise HeaderError("there is no item location table (no iloc box)")
        version, _ = reader.version_and_flags()
        if version > 2:
            raise HeaderError(f"iloc version {version} is unknown")
        sizes = reader.uint(2)
        offset_size, length_size, base_offset_size = sizes >> 12, (sizes >> 8) & 15, (sizes >> 4) & 15
        index_size = sizes & 15 if version in (1, 2) else 0
        for field_size in (offset_size, length_size, base_offset_size, index_size):
            if field_size not in (0, 4, 8):
                raise HeaderError("the iloc box has an invalid field size")
        count = reader.uint(2 if version < 2 else 4)
        locations = {}
        for _ in range(count):
            item_id = reader.uint(2 if version < 2 else 4)
            method = reader.uint(2) & 15 if version in (1, 2) else 0
            external = reader.uint(2) != 0
            base = reader.uint(base_offset_size)
            extents = []
            for _ in range(reader.uint(2)):
                reader.uint(index_size)
                extents.append((base + reader.uint(offset_size), reader.uint(length_size)))
            locations[item_id] = _Location(method, external, tuple(extents))
        return locations

    def references(self, reference_type: bytes) -> list[tuple[int, list[int]]]:
        """(from item, to items) of every ``reference_type`` reference: cdsc (metadata describing an image), dimg
        (the tiles or inputs a derived image such as a grid is made of)."""
        reader = self._reader(b"iref")
        if reader is None:
            return []
        version, _ = reader.version_and_flags()
        id_size = 2 if version == 0 else 4
        found = []
        for box_type, start, end in _boxes(self.data, reader.pos, reader.end):
            entry = _Reader(self.data, start, end)
            from_id = entry.uint(id_size)
            to_ids = [entry.uint(id_size) for _ in range(entry.uint(2))]
            if box_type == reference_type:
                found.append((from_id, to_ids))
        return found

    def references_to(self, reference_type: bytes, target: int) -> list[int]:
        return [from_id for from_id, to_ids in self.references(reference_type) if target in to_ids]

    def _property_table(self) -> tuple[list[tuple[bytes, int, int]], dict[int, list[int]]]:
        """The ipco properties, and each item's property indexes (1-based) in the order its ipma entry lists them."""
        if self._properties is None:
            iprp = self.children.get(b"iprp")
            if iprp is None:
                raise HeaderError("there are no item properties (no iprp box)")
            properties: list[tuple[bytes, int, int]] = []
            associations: dict[int, list[int]] = {}
            for box_type, start, end in _boxes(self.data, *iprp):
                if box_type == b"ipco" and not properties:
                    properties = list(_boxes(self.data, start, end))
                elif box_type == b"ipma":
                    for item_id, indexes in _associations(_Reader(self.data, start, end)):
                        associations.setdefault(item_id, []).extend(indexes)
            self._properties = (properties, associations)
        return self._properties

    def properties_of(self, item_id: int) -> tuple[tuple[int, int], tuple[Transform, ...]]:
        """The ispe size and the transforms of ``item_id``, in the order its associations list them."""
        properties, associations = self._property_table()
        size = None
        transforms: list[Transform] = []
        for index in associations.get(item_id, []):
            if index == 0:
                continue
            if index > len(properties):
                raise HeaderError(f"property {index} is associated but does not exist")
            box_type, start, end = properties[index - 1]
            prop = _Reader(self.data, start, end)
            if box_type == b"ispe":
                prop.version_and_flags()
                size = (prop.uint(4), prop.uint(4))
            elif box_type == b"clap":
                width_n, width_d, height_n, height_d = (prop.uint(4) for _ in range(4))
                if width_d == 0 or height_d == 0:
                    raise HeaderError("the clap box divides by zero")
                transforms.append(Crop(_round_half_up(width_n, width_d), _round_half_up(height_n, height_d)))
            elif box_type == b"irot":
                transforms.append(Rotation(prop.uint(1) & 3))
            elif box_type == b"imir":
                transforms.append(Mirror(prop.uint(1) & 1))
        if size is None:
            raise HeaderError(f"image item {item_id} has no size (no ispe property)")
        return size, tuple(transforms)

    def item_data(self, fp: BinaryIO, location: _Location, limit: int) -> bytes | None:
        """An item's bytes when they are in this file or its idat box and at most ``limit`` long, else None."""
        if location.external or location.construction_method not in (0, 1):
            return None
        if location.construction_method == 1:
            idat = self.children.get(b"idat")
            if idat is None:
                return None
            source_start, source_end = idat
        chunks, total = [], 0
        for offset, length in location.extents:
            if length == 0 or total + length > limit:
                return None
            total += length
            if location.construction_method == 0:
                fp.seek(offset)
                chunk = fp.read(length)
            else:
                chunk = self.data[source_start + offset:min(source_start + offset + length, source_end)]
            if len(chunk) != length:
                return None
            chunks.append(chunk)
        return b"".join(chunks)


def _associations(reader: _Reader) -> Iterator[tuple[int, list[int]]]:
    version, flags = reader.version_and_flags()
    for _ in range(reader.uint(4)):
        entry_id = reader.uint(2 if version < 1 else 4)
        indexes = []
        for _ in range(reader.uint(1)):
            value = reader.uint(2) if flags & 1 else reader.uint(1)
            indexes.append(value & (0x7FFF if flags & 1 else 0x7F))  # the top bit says "essential"
        yield entry_id, indexes


def _round_half_up(numerator: int, denominator: int) -> int:
    return max(1, (2 * numerator + denominator) // (2 * denominator))
