"""The queue's rules: claiming, leases, retries with backoff, the dead letter, pause, and the circuit breaker.

All SQL is in the db package; this module decides what happens and publishes an event after each commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .config import QueueSettings
from .db import Database
from .eta import ThroughputMeter, rounded_eta
from .events import Broadcaster
from .metrics import Metrics
from .models import ClaimedJob, Job, JobKind, NewPhoto, NextJob, OutputFile, PhotoState, Stats, Status, iso

log = logging.getLogger(__name__)

PAUSED_SETTING = "queue.paused"
PRUNE_INTERVAL_SECONDS = 3600.0  # complete jobs older than [queue] keep_done_days are deleted this often
IDLE_RECHECK_SECONDS = 30.0  # an idle worker looks again at least this often (e.g. after `photoq retry-failed`)


class CircuitBreaker:
    """Opens after `threshold` consecutive system failures (full disk, broken pool...) and stays open for
    `cooldown` seconds, so one broken disk does not burn every queued job's attempts. After the cooldown one
    job is let through (half-open): success closes the breaker, another failure opens it again."""

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic):
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self.consecutive_failures = 0
        self._open_until: float | None = None
        self.last_error: str | None = None

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        return "open" if self._clock() < self._open_until else "half_open"

    def seconds_until_closed(self) -> float:
        return max(0.0, self._open_until - self._clock()) if self._open_until is not None else 0.0

    def allows_claims(self) -> bool:
        return self.state != "open"

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._open_until = None
        self.last_error = None

    def record_system_failure(self, error: str) -> bool:
        """Count a failure; True when this opened the breaker."""
        self.consecutive_failures += 1
        self.last_error = error
        if self.state == "half_open" or self.consecutive_failures >= self.threshold:
            self._open_until = self._clock() + self.cooldown
            return True
        return False

    def as_dict(self) -> dict:
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive_failures,
            "threshold": self.threshold,
            "retry_in_seconds": round(self.seconds_until_closed(), 1),
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Backoff:
    base: float
    cap: float

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Exponential backoff with full jitter: uniform over [0, min(cap, base * 2^(attempt-1))]."""
        return rng() * min(self.cap, self.base * 2 ** max(attempt - 1, 0))


class JobQueue:
    def __init__(self, db: Database, events: Broadcaster, settings: QueueSettings,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None):
        self.db = db
        self.metrics = metrics  # also read by the workers and ingest
        self.events = events
        self.settings = settings
        self.clock = clock
        self.backoff = Backoff(settings.backoff_base_seconds, settings.backoff_max_seconds)
        self.breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_seconds)
        self.paused = False
        self.throughput = ThroughputMeter()  # jobs from claim to outcome; turns remaining jobs into eta_seconds
        self._changed = asyncio.Event()

    async def start(self) -> int:
        """Load the pause switch and make the last run's orphaned jobs runnable. Returns how many were reclaimed."""
        self.paused = await self.db.get_setting(PAUSED_SETTING) == "1"
        reclaimed = await self.db.reclaim_orphans(self.clock())
        if reclaimed:
            log.info("reclaimed %d job(s) interrupted by the last shutdown or crash", reclaimed)
        self.events.stats_changed()
        return reclaimed

    # -- waking workers ----------------------------------------------------------------------------------------

    def change_marker(self) -> asyncio.Event:
        """Take this before looking for work; it is set by the next change that may make work runnable."""
        return self._changed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_work(self, marker: asyncio.Event) -> None:
        timeout = IDLE_RECHECK_SECONDS
        if not self.paused:
            if not self.breaker.allows_claims():
                timeout = min(timeout, self.breaker.seconds_until_closed())
            next_run = await self.db.next_run_at()
            if next_run is not None:
                timeout = min(timeout, max(0.0, next_run - self.clock()))
        try:
            await asyncio.wait_for(marker.wait(), timeout + 0.01)
        except TimeoutError:
            pass

    # -- producing ---------------------------------------------------------------------------------------------

    async def add_photos(self, album_id: int, photos: Sequence[NewPhoto], staged_ids: Sequence[int]):
        results = await self.db.insert_photos(album_id, photos, staged_ids, self.clock(), self.settings.max_attempts)
        new_ids = [photo_id for photo_id, _ in results if photo_id is not None]
        if new_ids:
            self.events.publish_photos(
                {"id": pid, "album_id": album_id, "processing_status": "pending", "thumbnail_status": "pending",
                 "variant_status": "pending", "error": None, "thumbhash": None}
                for pid in new_ids
            )
            self._notify()
        return results

    async def create_album(self, name: str):
        album = await self.db.create_album(name, self.clock())
        self.events.stats_changed()
        return album

    async def delete_album(self, album_id: int, remove_files) -> bool:
        """Delete an album with its photos, jobs and (through `remove_files`) files. False when there is none."""
        found = await self.db.delete_album(album_id, remove_files)
        if found:
            self.events.stats_changed([None, album_id])
        return found

    async def delete_photo(self, photo_id: int, remove_files) -> bool:
        photo = await self.db.get_photo(photo_id)
        if photo is None or not await self.db.delete_photo(photo_id, remove_files):
            return False
        self.events.stats_changed([None, photo.album_id])
        return True

    async def has_room(self) -> bool:
        return await self.db.unfinished_job_count() < self.settings.max_pending

    # -- consuming ---------------------------------------------------------------------------------------------

    def can_claim(self) -> bool:
        return not self.paused and self.breaker.allows_claims()

    async def claim(self, limit: int = 1) -> list[ClaimedJob]:
        if not self.can_claim():
            return []
        now = self.clock()
        claimed, states = await self.db.claim_jobs(now, now + self.settings.lease_seconds, limit)
        for c in claimed:
            self.throughput.started(c.job.id, str(c.job.kind))
        self._publish(states)
        return claimed

    async def next_runnable(self) -> NextJob | None:
        """The job the next claim would take (None when nothing is runnable or claims are held back)."""
        if not self.can_claim():
            return None
        return await self.db.next_runnable_job(self.clock())

    async def claim_job(self, job_id: int) -> ClaimedJob | None:
        """Claim this job, as chosen from next_runnable; None when it is gone, taken, or claims are held back."""
        if not self.can_claim():
            return None
        now = self.clock()
        claimed, states = await self.db.claim_job(job_id, now, now + self.settings.lease_seconds)
        for c in claimed:
            self.throughput.started(c.job.id, str(c.job.kind))
        self._publish(states)
        return claimed[0] if claimed else None

    async def renew(self, jobs: Sequence[Job]) -> None:
        if jobs:
            await self.db.renew_leases([(j.id, j.lease_token) for j in jobs if j.lease_token is not None],
                                      self.clock() + self.settings.lease_seconds)

    async def complete(self, job: Job, outputs: Sequence[OutputFile]) -> PhotoState | None:
        self.breaker.record_success()
        state = await self.db.complete_job(job, outputs, self.clock())
        self.throughput.finished(job.id, completed=state is not None)  # before the stats this event triggers
        self._publish([state])
        return state

    async def fail(self, job: Job, error: str, system_fault: bool) -> PhotoState | None:
        """Record a failed attempt: retry later with backoff, or dead-letter after max attempts."""
        self.throughput.finished(job.id, completed=False)
        if system_fault and self.breaker.record_system_failure(error):
            self._publish_queue_state()
            log.error("circuit breaker open for %.0fs after %d consecutive system failures; last: %s",
                      self.breaker.cooldown, self.breaker.consecutive_failures, error)
        now = self.clock()
        retry_at = None
        if job.attempts < job.max_attempts:
            retry_at = now + self.backoff.delay(job.attempts)
        state = await self.db.fail_job(job, error, retry_at, now)
        if state is not None:
            if self.metrics is not None:
                self.metrics.job_failed(str(job.kind), will_retry=retry_at is not None)
            if retry_at is None:
                log.warning("job %d (%s of photo %d) failed for good after %d attempts: %s",
                            job.id, job.kind, job.photo_id, job.attempts, error)
            else:
                log.info("job %d (%s of photo %d) attempt %d failed, retrying in %.1fs: %s",
                         job.id, job.kind, job.photo_id, job.attempts, retry_at - now, error)
        self._publish([state])
        self._notify()
        return state

    async def release(self, job: Job) -> None:
        """Hand back a job interrupted by shutdown, attempt refunded."""
        self.throughput.finished(job.id, completed=False)
        self._publish([await self.db.release_job(job, self.clock())])

    async def sweep_expired_leases(self) -> int:
        """A job whose lease ran out (its worker hung while the process lived) counts as a failed attempt."""
        expired = await self.db.expired_leases(self.clock())
        for job in expired:
            await self.fail(job, "The worker stopped responding before the job finished (lease expired).",
                            system_fault=False)
        return len(expired)

    async def prune_finished_jobs(self) -> int:
        """Delete complete jobs that finished more than [queue] keep_done_days ago (0 keeps them forever)."""
        if self.settings.keep_done_days <= 0:
            return 0
        pruned = await self.db.prune_finished_jobs(self.clock() - self.settings.keep_done_days * 86400)
        if pruned:
            log.info("pruned %d complete job(s) older than %g day(s)", pruned, self.settings.keep_done_days)
        return pruned

    async def keep_pruning(self) -> None:
        """Prune at start-up, then every PRUNE_INTERVAL_SECONDS, until cancelled."""
        while True:
            try:
                await self.prune_finished_jobs()
            except Exception:
                log.exception("could not prune finished jobs")
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)

    # -- operating ---------------------------------------------------------------------------------------------

    async def pause(self) -> None:
        await self.db.set_setting(PAUSED_SETTING, "1")
        self.paused = True
        self._publish_queue_state()

    async def resume(self) -> None:
        await self.db.set_setting(PAUSED_SETTING, "0")
        self.paused = False
        self._publish_queue_state()
        self._notify()

    async def retry_photo(self, photo_id: int) -> PhotoState | None:
        state = await self.db.retry_photo(photo_id, self.clock(), self.settings.max_attempts)
        if state is not None:
            self._publish([state])
            self._notify()
        return state

    async def retry_all_failed(self) -> int:
        count, states = await self.db.retry_all_failed(self.clock(), self.settings.max_attempts)
        self._publish(states)
        self._notify()
        return count

    async def queue_outputs(self, parts: Sequence[tuple[int, JobKind, Sequence[str]]],
                            dry_run: bool = False) -> list[tuple[str, list[str]]]:
        """Have photos' jobs render single outputs again (`photoq reprocess`); the outcome of each part, as
        Database.queue_outputs says."""
        outcomes, states = await self.db.queue_outputs(parts, self.clock(), self.settings.max_attempts, dry_run)
        self._publish(states)
        if not dry_run and any(outcome == "queued" for outcome, _ in outcomes):
            self._notify()
        return outcomes

    async def clear_failed(self) -> int:
        cleared = await self.db.clear_failed_jobs()
        self._publish_queue_state()
        return cleared

    def _publish_queue_state(self) -> None:
        """Tell live pages about queue changes that move no photo: pause, resume, clearing, the breaker opening."""
        self.events.publish_to_all("queue", {"paused": self.paused, "circuit_breaker": self.breaker.state})
        self.events.stats_changed()  # eta_seconds: null while paused or the breaker is open, a number again after

    # -- stats -------------------------------------------------------------------------------------------------

    async def stats(self, album_id: int | None = None) -> Stats:
        """Photo counts with eta_seconds (GET /api/stats, an album's "stats", SSE `stats`)."""
        return dataclasses.replace(await self.db.stats(album_id), eta_seconds=await self.eta_seconds(album_id))

    async def eta_seconds(self, album_id: int | None = None) -> int | None:
        """0 when nothing is left; None while paused, while the breaker is open, or until enough was measured.
        An album's last job waits for every job ahead of it in claim order, so those count too."""
        if album_id is None:
            remaining = await self.db.unfinished_jobs_by_kind()
        else:
            remaining = await self.db.jobs_until_album_done(album_id)
        if not any(remaining.values()):
            return 0
        if not self.can_claim():
            return None
        return rounded_eta(self.throughput.estimate(remaining))

    async def overview(self, status: Status | None = None, limit: int = 100) -> dict:
        counts = await self.db.job_counts()
        oldest = await self.db.oldest_unfinished_job_created_at()
        jobs = await self.db.list_jobs(status, limit)
        return {
            "queue_size": counts["pending"],
            "processing_count": counts["processing"],
            "failed_count": counts["failed"],
            "oldest_job_age_seconds": round(self.clock() - oldest, 1) if oldest is not None else None,
            "paused": self.paused,
            "circuit_breaker": self.breaker.as_dict(),
            "jobs": [job_dict(j) for j in jobs],
        }

    def _publish(self, states: Sequence[PhotoState | None]) -> None:
        self.events.publish_photos(s.as_event() for s in states if s is not None)


def job_dict(job: Job) -> dict:
    return {
        "id": job.id,
        "photo_id": job.photo_id,
        "kind": str(job.kind),
        "status": str(job.status),
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "run_at": iso(job.run_at),
        "error": job.last_error,
        "created_at": iso(job.created_at),
    }
