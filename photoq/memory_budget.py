"""Admission by memory: a job starts only when its estimated peak fits beside the jobs already running.

The estimate itself is imaging.estimated_peak_bytes (the imaging code knows how it decodes); this module only adds
up reservations. One rule keeps big jobs from starving and the pool from deadlocking: a job larger than the whole
budget may start when nothing else runs.
"""

from __future__ import annotations

import asyncio
import os

MIB = 1024 * 1024


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def default_budget_mb() -> int:
    """Half of physical memory (the other half is for the server, the page cache and everything else); 1024 MiB
    where the machine does not say."""
    total = physical_memory_bytes()
    return max(1, total // 2 // MIB) if total else 1024


class MemoryBudget:
    """Reservations of estimated bytes against `limit_bytes` (None: no limit). One event loop, no locks needed."""

    def __init__(self, limit_bytes: int | None):
        self.limit_bytes = limit_bytes
        self.reserved = 0
        self.running = 0
        self.waits = 0  # times a job had to wait for memory to free up
        self.waiting = 0  # workers waiting for memory right now (at most one: the claim lock)
        self._changed = asyncio.Event()

    def fits(self, need: int) -> bool:
        if self.limit_bytes is None or self.running == 0:
            return True  # alone, any job may run: otherwise one larger than the budget would never finish
        return self.reserved + need <= self.limit_bytes

    def reserve(self, need: int) -> None:
        self.reserved += need
        self.running += 1

    def release(self, need: int) -> None:
        self.reserved = max(0, self.reserved - need)
        self.running = max(0, self.running - 1)
        self._changed.set()
        self._changed = asyncio.Event()

    def change_marker(self) -> asyncio.Event:
        """Take this before deciding to wait; it is set by the next release."""
        return self._changed
