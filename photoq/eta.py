"""How long the queue still needs: recent throughput measured in memory, turned into seconds for remaining jobs.

Pure logic with an injectable clock; the workers report when a job's execution starts and ends, JobQueue.stats asks.

The model: a job of kind k costs c_k worker-seconds (the mean execution time of its last SAMPLES_PER_KIND completed
jobs), and the pool turns busy time into worker-seconds at a rate P (worker-seconds executed per second in which at
least one job was executing, over the last WINDOW_BUSY_SECONDS of such time). Remaining time = sum(n_k * c_k) / P.
Time in which nothing executed (an idle queue, a pause) is not counted at all, so an hour of idleness never makes the
rate look slow; fewer workers busy (waiting for memory, a batch's tail) lowers P, and the estimate with it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping

SAMPLES_PER_KIND = 20  # completed jobs per kind whose execution times give that kind's cost
WINDOW_BUSY_SECONDS = 300.0  # how much recent busy time the pool's parallelism is measured over
MIN_COMPLETIONS = 3  # no estimate until this many jobs completed since start (any kind)


class ThroughputMeter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, samples_per_kind: int = SAMPLES_PER_KIND,
                 window_busy_seconds: float = WINDOW_BUSY_SECONDS, min_completions: int = MIN_COMPLETIONS):
        self._clock = clock
        self._samples_per_kind = samples_per_kind
        self._window = window_busy_seconds
        self._min_completions = min_completions
        self._costs: dict[str, deque[float]] = {}  # kind -> execution seconds of its last completed jobs
        self._executing: dict[int, tuple[str, float]] = {}  # job id -> (kind, started at)
        self._busy = 0.0  # seconds in which at least one job executed, up to _busy_mark
        self._busy_mark = 0.0
        self._spent: deque[tuple[float, float]] = deque()  # (busy clock at the end, worker-seconds) per execution
        self._horizon = 0.0  # busy clock before which executions no longer count toward parallelism
        self.completions = 0

    def started(self, job_id: int, kind: str) -> None:
        now = self._clock()
        self._advance(now)
        self._executing[job_id] = (kind, now)

    def finished(self, job_id: int, completed: bool) -> None:
        """An execution ended; only `completed` ones say what a job of its kind costs, but every one used workers."""
        entry = self._executing.get(job_id)
        if entry is None:
            return
        now = self._clock()
        self._advance(now)
        del self._executing[job_id]
        kind, started = entry
        seconds = max(0.0, now - started)
        self._spent.append((self._busy, seconds))
        self._forget_before(self._busy - self._window)
        if completed:
            self.completions += 1
            costs = self._costs.setdefault(kind, deque(maxlen=self._samples_per_kind))
            costs.append(seconds)

    def _advance(self, now: float) -> None:
        if self._executing:
            self._busy += max(0.0, now - self._busy_mark)
        self._busy_mark = now

    def parallelism(self) -> float | None:
        """Worker-seconds executed per busy second, recently; None before any busy time."""
        now = self._clock()
        busy = self._busy + (max(0.0, now - self._busy_mark) if self._executing else 0.0)
        self._forget_before(busy - self._window)
        span = busy - self._horizon
        if span <= 0:
            return None
        # Executions that straddle the horizon count whole: at most one job's worth of bias on a 5-minute window.
        spent = sum(seconds for _, seconds in self._spent)
        spent += sum(max(0.0, now - started) for _, started in self._executing.values())
        return spent / span if spent > 0 else None

    def _forget_before(self, horizon: float) -> None:
        self._horizon = max(self._horizon, horizon)
        while self._spent and self._spent[0][0] <= self._horizon:
            self._spent.popleft()

    def cost(self, kind: str) -> float | None:
        costs = self._costs.get(kind)
        return sum(costs) / len(costs) if costs else None

    def estimate(self, remaining: Mapping[str, int]) -> float | None:
        """Seconds until `remaining` (kind -> unfinished jobs, running ones included) is done: 0 when nothing
        remains; None until MIN_COMPLETIONS jobs completed and every kind with work left has a measured cost."""
        if not any(n > 0 for n in remaining.values()):
            return 0.0
        if self.completions < self._min_completions:
            return None
        work = 0.0
        for kind, count in remaining.items():
            if count <= 0:
                continue
            cost = self.cost(kind)
            if cost is None:
                return None
            work += count * cost
        # What the running jobs have done already is not left to do (at most their whole expected cost each).
        now = self._clock()
        for kind, started in self._executing.values():
            if remaining.get(kind, 0) > 0:
                work -= min(max(0.0, now - started), self.cost(kind) or 0.0)
        rate = self.parallelism()
        if rate is None:
            return None
        return max(0.0, work) / rate


def rounded_eta(seconds: float | None) -> int | None:
    """Round an estimate to a step of roughly a tenth of it (5 s under a minute, 30 s under ten minutes, a minute
    under an hour, then five minutes), up, so drift of a second does not make a new live event and a queue with
    work left never says 0."""
    if seconds is None:
        return None
    if seconds <= 0:
        return 0
    step = 5 if seconds < 60 else 30 if seconds < 600 else 60 if seconds < 3600 else 300
    return int(math.ceil(seconds / step) * step)
