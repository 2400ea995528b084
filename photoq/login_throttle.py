"""Growing delays for wrong admin tokens and login codes, per client address (pure, with an injectable clock).

The general rate limiter lets a client make about 60 requests a second; for guessing a secret that is far too many.
After `free_failures` wrong guesses from one address, each further one locks that address out of every login (and
of Bearer authentication) for twice as long as the one before, from 1 s up to `max_lockout` seconds. A correct token
or code clears the address's record. Records of addresses that stopped guessing are forgotten once their lockout
would have ended twice over, and the table is bounded.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Failures:
    count: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    def __init__(self, free_failures: int = 5, max_lockout: float = 900.0, max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.free_failures = free_failures
        self.max_lockout = max_lockout
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, Failures] = OrderedDict()

    def retry_after(self, address: str) -> int:
        """Whole seconds until `address` may try again; 0 when it may now."""
        record = self._failures.get(address)
        if record is None:
            return 0
        wait = record.locked_until - self._clock()
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, address: str) -> int:
        """Count a wrong guess; returns the lockout it starts, in whole seconds (0 while still free)."""
        now = self._clock()
        record = self._failures.pop(address, None) or Failures()
        if record.count and now - record.last_failure > 2 * self.lockout_for(record.count) + 3600:
            record = Failures()  # an old record: start again
        record.count += 1
        record.last_failure = now
        lockout = self.lockout_for(record.count)
        record.locked_until = now + lockout
        self._failures[address] = record
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        return math.ceil(lockout)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)

    def lockout_for(self, count: int) -> float:
        over = count - self.free_failures
        if over <= 0:
            return 0.0
        return min(self.max_lockout, 2.0 ** min(over - 1, 30))
