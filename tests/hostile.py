"""Builders for hostile requests: damaged and deceptive files, raw multipart bodies, raw HTTP over a socket."""

from __future__ import annotations

import asyncio
import io
import random
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

from PIL import Image

from .support import jpeg, photo_like

BOUNDARY = "hostile-boundary-7f3a"


# -- files -------------------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims a huge canvas (valid CRCs, almost no pixel data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def gif_declaring(width: int, height: int) -> bytes:
    """A real 1x1 GIF whose logical screen and image descriptor are patched to the given size."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", width, height)
    descriptor = data.index(b"\x2c")
    data[descriptor + 5:descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    """An uncompressed greyscale TIFF whose IFD claims the given size, with 16 bytes of pixels."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
               (273, 4, 8 + 2 + 12 * 9 + 4), (277, 3, 1), (278, 4, height), (279, 4, 16)]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, 1) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + b"\x80" * 16


def webp_declaring(width: int, height: int) -> bytes:
    vp8x = bytes(4) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def animated_gif(frames: int, size=(16, 16)) -> bytes:
    """A GIF with thousands of frames: a frame-walking decoder would spend minutes on it."""
    images = [Image.new("P", size, i % 256) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=10, loop=0, optimize=False)
    return buffer.getvalue()


def jpeg_scan_offset(data: bytes) -> int:
    """Where the entropy-coded data of a baseline JPEG starts (just after the SOS segment)."""
    sos = data.index(b"\xff\xda")
    length = struct.unpack(">H", data[sos + 2:sos + 4])[0]
    return sos + 2 + length


def jpeg_header_then_garbage(seed: int = 0) -> bytes:
    """Every marker up to the scan parses; the scan data is cut after a few bytes and followed by junk that is
    not JPEG at all: the header probe passes, the decoder cannot finish."""
    data = jpeg(480, 360, seed=seed)
    start = jpeg_scan_offset(data)
    return data[:start + 64] + random.Random(seed).randbytes(2000)


def jpeg_truncated_in_scan(seed: int = 0) -> bytes:
    data = jpeg(480, 360, seed=seed)
    start = jpeg_scan_offset(data)
    return data[:start + (len(data) - start) // 3]


def jpeg_zip_polyglot(seed: int = 0) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("evil.html", "<script>alert(document.cookie)</script>")
    return jpeg(200, 150, seed=seed) + archive.getvalue()


def jpeg_with_exif_block(payload: bytes, seed: int = 0) -> bytes:
    """A JPEG with an APP1 segment holding exactly `payload` (which should start with b'Exif\\0\\0')."""
    buffer = io.BytesIO()
    photo_like(120, 90, seed).save(buffer, "JPEG", quality=80, exif=payload)
    return buffer.getvalue()


def huge_exif(seed: int = 0) -> bytes:
    """An EXIF block close to the 64 KiB APP1 limit: thousands of entries with long strings."""
    exif = Image.Exif()
    exif[0x010F] = "M" * 30_000  # Make
    exif[0x0110] = "X" * 30_000  # Model
    exif[0x010E] = "\x00\x01\x02" * 1000  # ImageDescription full of control bytes
    return jpeg_with_exif_block(exif.tobytes(), seed)


MALFORMED_EXIF = [
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x01" * 64,  # 65535 entries, no data
    b"Exif\x00\x00MM\x00*\xff\xff\xff\xf0",  # IFD offset far beyond the block
    b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x69\x87\x04\x00\x01\x00\x00\x00\x08\x00\x00\x00",  # IFD loop
]


def bmp(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    photo_like(32, 32, seed).save(buffer, "BMP")
    return buffer.getvalue()


HTML = b"<!doctype html><html><body><script>fetch('/api/albums')</script></body></html>"
SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100" '
       b'onload="alert(1)"><rect width="100" height="100"/></svg>')
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


# -- multipart and HTTP ------------------------------------------------------------------------------------------


@dataclass
class Part:
    body: bytes
    filename: str | bytes | None = "photo.jpg"
    name: str = "file"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    raw_disposition: bytes | None = None  # when set, sent as-is instead of the built Content-Disposition

    def head(self) -> bytes:
        if self.raw_disposition is not None:
            disposition = self.raw_disposition
        else:
            disposition = b'form-data; name="' + self.name.encode() + b'"'
            if self.filename is not None:
                name = self.filename if isinstance(self.filename, bytes) else self.filename.encode("utf-8")
                disposition += b'; filename="' + name.replace(b"\\", b"\\\\").replace(b'"', b"%22") + b'"'
        lines = [b"Content-Disposition: " + disposition]
        if not any(k.lower() == b"content-type" for k, _ in self.headers):
            lines.append(b"Content-Type: application/octet-stream")
        lines += [k + b": " + v for k, v in self.headers]
        return b"\r\n".join(lines) + b"\r\n\r\n"


def multipart_body(*parts: Part, boundary: str = BOUNDARY, close: bool = True) -> bytes:
    out = b""
    for part in parts:
        out += b"--" + boundary.encode() + b"\r\n" + part.head() + part.body + b"\r\n"
    if close:
        out += b"--" + boundary.encode() + b"--\r\n"
    return out


def multipart_type(boundary: str = BOUNDARY) -> str:
    return f"multipart/form-data; boundary={boundary}"


@dataclass
class RawResponse:
    status: int | None  # None: the server closed the connection without answering
    headers: dict
    body: bytes


async def raw_http(host: str, port: int, head: bytes, body: bytes = b"", *, close_after_send: bool = False,
                   timeout: float = 10) -> RawResponse:
    """Send exactly these bytes on a fresh connection. With `close_after_send` the client hangs up at once
    (a browser tab closed mid-upload); else it reads the response until the server closes or it is complete."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(head + body)
        await writer.drain()
        if close_after_send:
            return RawResponse(None, {}, b"")
        return await asyncio.wait_for(_read_response(reader), timeout)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def _read_response(reader: asyncio.StreamReader) -> RawResponse:
    try:
        status_line = await reader.readline()
    except (ConnectionError, OSError):
        return RawResponse(None, {}, b"")
    if not status_line:
        return RawResponse(None, {}, b"")
    status = int(status_line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RawResponse(status, headers, body)


def request_head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
