"""Slots: a ceiling on how many of one kind of request run at once; the web layer answers 503 past it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .errors import Overloaded

RETRY_AFTER_SECONDS = 5


class Slots:
    """A counter with a ceiling; never waits."""

    def __init__(self, limit: int, what: str):
        self.limit = limit
        self.what = what
        self.in_use = 0

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        if self.in_use >= self.limit:
            raise Overloaded(f"Too many {self.what} at once ({self.limit}); try again in {RETRY_AFTER_SECONDS} s.",
                             headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
