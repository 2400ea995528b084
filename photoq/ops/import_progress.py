"""What `photoq import` shows while it works, on stderr.

On a terminal: one line rewritten in place (files and bytes done of the total, rate, time left, counts).
Elsewhere (a pipe, a CI log): the same figures as a plain line every PLAIN_EVERY_SECONDS, never a carriage return.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

TTY_EVERY_SECONDS = 0.2
PLAIN_EVERY_SECONDS = 10.0


@dataclass
class Counts:
    """Everything the import counts; shared by the progress line and the summary."""

    total_files: int = 0
    total_bytes: int = 0
    files_done: int = 0
    bytes_done: int = 0
    bytes_in_flight: int = 0  # of the batch being sent; counted again if the batch has to be sent again
    imported: int = 0
    duplicate: int = 0
    rejected: int = 0
    unreadable: int = 0
    journal: int = 0  # skipped: recorded as imported by an earlier run
    not_image: int = 0
    hidden: int = 0
    other: int = 0  # skipped: symlinks, devices, sockets, the data directory itself
    started: float = field(default_factory=time.monotonic)

    @property
    def failed(self) -> int:
        return self.rejected + self.unreadable


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def human_seconds(s: float) -> str:
    s = int(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    def __init__(self, counts: Counts, stream: TextIO = sys.stderr, quiet: bool = False, tty: bool | None = None):
        self.counts = counts
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty() if tty is None else tty
        self.note = ""  # a passing state shown after the figures, e.g. "queue full, waiting 60 s"
        self._task: asyncio.Task | None = None
        self._line_shown = False

    def line(self) -> str:
        c = self.counts
        sent = c.bytes_done + c.bytes_in_flight
        parts = [f"{c.files_done}/{c.total_files} files", f"{human_bytes(sent)}/{human_bytes(c.total_bytes)}"]
        elapsed = time.monotonic() - c.started
        if elapsed > 1 and sent:
            rate = sent / elapsed
            parts.append(f"{human_bytes(rate)}/s")
            if c.total_bytes > sent:
                parts.append(f"ETA {human_seconds((c.total_bytes - sent) / rate)}")
        parts.append(f"imported {c.imported}, duplicate {c.duplicate}, rejected {c.failed}")
        if self.note:
            parts.append(self.note)
        return "  ".join(parts)

    def show(self) -> None:
        if self.quiet:
            return
        text = self.line()
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r" + text[:width].ljust(width))
            self._line_shown = True
        else:
            self.stream.write(f"photoq import: {text}\n")
        self.stream.flush()

    def message(self, text: str, problem: bool = False) -> None:
        """A line of its own; on a terminal the progress line is redrawn below it. `--quiet` shows only problems."""
        if self.quiet and not problem:
            return
        if self.tty and self._line_shown:
            self.stream.write("\r\x1b[K")
            self._line_shown = False
        self.stream.write(text + "\n")
        if self.tty and not self.quiet and self._task is not None:
            self.show()
        self.stream.flush()

    def start(self) -> None:
        self.counts.started = time.monotonic()
        if not self.quiet:
            self._task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        every = TTY_EVERY_SECONDS if self.tty else PLAIN_EVERY_SECONDS
        while True:
            self.show()
            await asyncio.sleep(every)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        self.show()  # the final figures
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
