"""Per-client rate limiting: one token bucket per client key (the peer address), pure and with an injectable clock.

A bucket holds up to `capacity` tokens and gains `refill_per_second` tokens a second. A request spends its cost
(1 for most requests, less for cheap ones such as image files); when the bucket cannot pay, the request is refused
and the caller learns how long until it could be paid. The web layer turns that into 429 with Retry-After.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass
class TokenBucket:
    capacity: float
    refill_per_second: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.refill_per_second)
            self.updated = now

    def take(self, cost: float, now: float) -> float:
        """Spend `cost` tokens. Returns 0 when allowed, else the seconds until `cost` tokens will be there."""
        self._refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        if self.refill_per_second <= 0 or cost > self.capacity:
            return math.inf
        return (cost - self.tokens) / self.refill_per_second

    def full_at(self) -> float:
        """When this bucket will be full again if nothing more is spent (it is then as good as new)."""
        if self.refill_per_second <= 0:
            return math.inf
        return self.updated + (self.capacity - self.tokens) / self.refill_per_second


class RateLimiter:
    """Buckets per client key, created full on first sight. Memory stays bounded: when more than `max_clients`
    keys are tracked, buckets that have refilled completely are forgotten (a new one would be identical), and then,
    if still too many, the least recently seen ones (down to nine tenths of `max_clients`)."""

    def __init__(self, capacity: float, refill_per_second: float, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        if capacity <= 0 or refill_per_second <= 0:
            raise ValueError("capacity and refill_per_second must be above 0")
        self.capacity = float(capacity)
        self.refill_per_second = float(refill_per_second)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key: Hashable, cost: float = 1.0) -> float:
        """Charge `key` for a request. Returns 0 when it may go ahead, else the seconds it should wait."""
        if cost <= 0:
            return 0.0
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._prune(now)
            bucket = TokenBucket(self.capacity, self.refill_per_second, self.capacity, now)
            self._buckets[key] = bucket
        else:
            self._buckets.move_to_end(key)
        return bucket.take(cost, now)

    def _prune(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.full_at() <= now]:
            del self._buckets[key]
        # Evict a tenth at once so that a flood of new keys does not rescan every bucket on each request.
        target = self.max_clients - 1 - self.max_clients // 10
        while len(self._buckets) > target:
            self._buckets.popitem(last=False)


def retry_after_seconds(wait: float) -> int:
    """A Retry-After value (whole seconds, at least 1) for a wait from RateLimiter.check."""
    if not math.isfinite(wait):
        return 3600
    return max(1, math.ceil(wait))
