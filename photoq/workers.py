"""Worker coroutines that claim jobs and hand the image work to a process each.

Every worker owns a one-process executor, so a child that dies (killed, segfault, out of memory) breaks only its
own worker's job: that job loses one attempt, the executor is rebuilt, and every other worker carries on.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from . import imaging
from .config import Output, Settings
from .memory_budget import MIB, MemoryBudget
from .models import ClaimedJob, Job, JobKind, OutputFile, Status
from .queue import JobQueue
from .storage import Storage

log = logging.getLogger(__name__)


def output_specs(outputs: Sequence[Output], settings: Settings) -> list[imaging.OutputSpec]:
    return [
        imaging.OutputSpec(
            name=o.name, width=o.width, height=o.height, format=o.format,
            quality=settings.processing.quality, method=settings.processing.webp_method,
            speed=settings.processing.avif_speed,
        )
        for o in outputs
    ]


def specs_for_job(specs: Sequence[imaging.OutputSpec], job: Job) -> list[imaging.OutputSpec]:
    """The specs a job renders: all of its kind, or only the outputs it names (a re-render queued by
    `photoq reprocess` or doctor). Names no longer configured are skipped."""
    if job.outputs is None:
        return list(specs)
    return [spec for spec in specs if spec.name in job.outputs]


# Image processes run at a lower CPU priority, so uploads and live progress stay prompt while every core renders
# (measured by `make bench`: ingest and SSE latency with both cores busy); idle cycles still all go to rendering.
IMAGE_PROCESS_NICENESS = 10
MEMORY_RECHECK_SECONDS = 5.0  # a worker waiting for memory looks at the queue again at least this often


def _process_context():
    # aiosqlite's thread already exists, so forking the event loop's process is unsafe; a forkserver child is
    # forked from a clean single-threaded server process that has imported only the imaging code (and simplejpeg with
    # numpy, whose pages the children then share; a missing module is skipped).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["photoq.imaging", "simplejpeg"])
    return context


class ImageProcess:
    """A one-process executor that can be rebuilt when its child dies or must be killed."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._executor: ProcessPoolExecutor | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=_process_context(),
                initializer=imaging.init_worker,
                initargs=(self._settings.upload.max_pixels, IMAGE_PROCESS_NICENESS),
                max_tasks_per_child=self._settings.processing.max_tasks_per_child,
            )
        return self._executor

    async def render(self, source: str, specs: list[imaging.OutputSpec], dest_dir: str,
                     placeholder: bool = False) -> list[imaging.OutputResult]:
        loop = asyncio.get_running_loop()
        call = functools.partial(imaging.render, source, specs, dest_dir, self._settings.storage.fsync, placeholder)
        try:
            future = loop.run_in_executor(self._ensure(), call)
        except BrokenProcessPool:
            # The child died while idle (e.g. the OOM killer chose it): not this job's doing, so start a new one.
            self.discard(kill=True)
            future = loop.run_in_executor(self._ensure(), call)
        return await asyncio.wait_for(future, self._settings.processing.job_timeout_seconds)

    async def prewarm(self) -> None:
        """Start the child now rather than with the first job. Off the event loop: the first child of the server
        also launches the forkserver, and `submit` blocks for that (~0.25 s)."""
        executor = self._ensure()
        try:
            await asyncio.to_thread(executor.submit, os.getpid)
        except (RuntimeError, BrokenProcessPool):  # shut down or broken meanwhile: the next job starts a new one
            pass

    def child_pids(self) -> list[int]:
        # ProcessPoolExecutor has no public way to reach its children; killing is the only way to stop a render.
        processes = getattr(self._executor, "_processes", None) or {}
        return [p.pid for p in processes.values() if p.pid is not None]

    def discard(self, kill: bool) -> None:
        """Drop the executor (a new one starts with the next job); with `kill`, end its child at once."""
        pids = self.child_pids() if kill else []
        executor, self._executor = self._executor, None
        if executor is None:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        executor.shutdown(wait=False, cancel_futures=True)


class WorkerPool:
    def __init__(self, queue: JobQueue, storage: Storage, settings: Settings):
        self.queue = queue
        self.storage = storage
        self.settings = settings
        self.size = settings.processing.workers
        self._processes = [ImageProcess(settings) for _ in range(self.size)]
        self._specs = {kind: output_specs(settings.outputs_for(kind), settings) for kind in ("thumbnail", "variant")}
        self._fingerprints = {spec.name: imaging.spec_fingerprint(spec)
                              for specs in self._specs.values() for spec in specs}
        self._tasks: list[asyncio.Task] = []
        self._running: dict[int, Job] = {}  # job id -> the leased job, for lease renewal
        self._job_tasks: set[asyncio.Task] = set()
        self._stopping = False
        budget_mb = settings.processing.memory_budget_mb
        self.memory = MemoryBudget(budget_mb * MIB if budget_mb else None)
        self._claim_lock = asyncio.Lock()  # one worker at a time picks the next job (and waits for its memory)
        if queue.metrics is not None:
            queue.metrics.memory_budget.set(self.memory.limit_bytes or 0)

    @property
    def busy(self) -> int:
        return len(self._running)

    def child_pids(self) -> list[int]:
        return [pid for p in self._processes for pid in p.child_pids()]

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(i), name=f"photoq-worker-{i}") for i in range(self.size)]
        self._tasks.append(asyncio.create_task(self._keep_leases(), name="photoq-leases"))
        self._tasks.append(asyncio.create_task(self._sweep_expired(), name="photoq-lease-sweep"))
        self._tasks.append(asyncio.create_task(self.queue.keep_pruning(), name="photoq-prune-jobs"))
        self._tasks.append(asyncio.create_task(self._prewarm(), name="photoq-prewarm"))

    async def _prewarm(self) -> None:
        # The image processes start with the server, so the first upload's jobs do not wait for them.
        for process in self._processes:
            await process.prewarm()

    async def stop(self, grace: float) -> None:
        """Stop claiming, give running jobs `grace` seconds, then give back what did not finish."""
        self._stopping = True
        self.queue._notify()
        job_tasks = list(self._job_tasks)
        if job_tasks:
            log.info("waiting up to %.0fs for %d running job(s) to finish", grace, len(job_tasks))
            _, pending = await asyncio.wait(job_tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for process in self._processes:
            process.discard(kill=True)

    async def _work(self, slot: int) -> None:
        while not self._stopping:
            marker = self.queue.change_marker()
            try:
                claimed, memory = await self._claim_within_budget()
            except Exception:
                log.exception("could not claim a job")
                claimed, memory = None, 0
                await asyncio.sleep(1)
            if claimed is None:
                if not self._stopping:
                    await self.queue.wait_for_work(marker)
                continue
            # The job runs in its own task so that shutdown can wait for it without cancelling the claim loop.
            task = asyncio.create_task(self._run(slot, claimed, memory))
            self._job_tasks.add(task)
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():
                    raise
            finally:
                self._job_tasks.discard(task)

    async def _claim_within_budget(self) -> tuple[ClaimedJob | None, int]:
        """Claim the next job in queue order once its estimated memory fits beside the running jobs' (see
        memory_budget.py); returns it with the bytes reserved for it, or (None, 0) when there is nothing to run.

        The worker that found a job too big for now holds the claim lock while it waits, so no other job starts
        meanwhile and the big one is not overtaken (strict queue order). The waiting job is not claimed: it stays
        pending, with no lease to keep and no attempt used, and shutdown simply leaves it in the queue.

        Without a budget nothing waits: the plain claim, with no look ahead and no claim lock.
        """
        if self.memory.limit_bytes is None:
            jobs = await self.queue.claim(1)
            if not jobs:
                return None, 0
            first = jobs[0]
            return await self._admit(first, await self._estimated_memory(
                first.job.kind, first.width, first.height, first.format))
        async with self._claim_lock:
            waited = False
            while not self._stopping:
                upcoming = await self.queue.next_runnable()
                if upcoming is None:
                    return None, 0
                need = await self._estimated_memory(upcoming.kind, upcoming.width, upcoming.height, upcoming.format,
                                                    upcoming.sha256)
                if self.memory.fits(need):
                    claimed = await self.queue.claim_job(upcoming.id)
                    if claimed is None:  # taken, deleted or held back meanwhile
                        continue
                    return await self._admit(claimed, need)
                if not waited:
                    waited = True
                    self.memory.waits += 1
                    if self.queue.metrics is not None:
                        self.queue.metrics.memory_waits.inc()
                    log.info("job %d (%s, %dx%d) needs ~%d MiB; waiting for running jobs to free memory",
                             upcoming.id, upcoming.kind, upcoming.width, upcoming.height, need // MIB)
                await self._wait_for_memory_or_work()
            return None, 0

    async def _admit(self, claimed: ClaimedJob, need: int) -> tuple[ClaimedJob | None, int]:
        """Reserve `need` bytes for a claimed job, or give it back when stop() came while the claim was written."""
        if self._stopping:
            await self.queue.release(claimed.job)
            return None, 0
        self.memory.reserve(need)
        self._memory_changed()
        return claimed, need

    async def _estimated_memory(self, kind: JobKind, width: int, height: int, fmt: str, sha256: str = "") -> int:
        # Every output of the kind, even when the job renders only some: never less than it needs. With the original
        # at hand, what its header says about the decoder's own memory too (a progressive JPEG's coefficients).
        facts = None
        if sha256:
            facts = await asyncio.to_thread(imaging.decode_facts, str(self.storage.original_path(sha256, fmt)), fmt)
        return imaging.estimated_peak_bytes(width, height, fmt, self._specs[str(kind)], facts)

    async def _wait_for_memory_or_work(self) -> None:
        """Until a running job frees memory, the queue changes (a new first job, pause, shutdown) or a few seconds
        pass (the waiting job may have been deleted meanwhile)."""
        self.memory.waiting += 1
        waiters = [asyncio.ensure_future(marker.wait())
                   for marker in (self.memory.change_marker(), self.queue.change_marker())]
        try:
            await asyncio.wait(waiters, timeout=MEMORY_RECHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.memory.waiting -= 1
            for waiter in waiters:
                waiter.cancel()

    def _memory_changed(self) -> None:
        if self.queue.metrics is not None:
            self.queue.metrics.memory_reserved.set(self.memory.reserved)

    async def _run(self, slot: int, claimed: ClaimedJob, memory: int) -> None:
        job = claimed.job
        self._running[job.id] = job
        started = time.monotonic()
        try:
            outcome = await self._execute(slot, claimed)
            if self.queue.metrics is not None:
                self.queue.metrics.observe_job(str(job.kind), outcome, time.monotonic() - started)
        except asyncio.CancelledError:
            self._processes[slot].discard(kill=True)
            await self.queue.release(job)
            log.info("job %d (%s of photo %d) interrupted by shutdown; it runs again at the next start",
                     job.id, job.kind, job.photo_id)
        except Exception:
            # Recording the outcome failed (database locked too long, disk full, I/O error). The worker must live
            # on: the job keeps its lease, which is no longer renewed, so the sweep gives it another attempt.
            log.exception("could not record the outcome of job %d (%s of photo %d); it runs again once its lease "
                          "expires", job.id, job.kind, job.photo_id)
        finally:
            self._running.pop(job.id, None)
            self.memory.release(memory)
            self._memory_changed()

    async def _execute(self, slot: int, claimed: ClaimedJob) -> str:
        """Run one job and record its outcome; returns the outcome: complete, retry or failed."""
        job = claimed.job
        source = str(self.storage.original_path(claimed.sha256, claimed.format))
        dest = self.storage.variant_dir(job.photo_id)
        try:
            specs = specs_for_job(self._specs[str(job.kind)], job)
            await self.storage.remove_partial_outputs(job.photo_id, [spec.name for spec in specs])
            results = await self._processes[slot].render(
                source, specs, str(dest), placeholder=job.kind == JobKind.THUMBNAIL)
        except imaging.ImageError as exc:
            return await self._fail(job, str(exc), system_fault=False)
        except TimeoutError:
            self._processes[slot].discard(kill=True)
            return await self._fail(
                job, f"Processing took longer than {self.settings.processing.job_timeout_seconds:.0f} seconds "
                     "and was stopped.", system_fault=False,
            )
        except BrokenProcessPool:
            self._processes[slot].discard(kill=True)
            return await self._fail(
                job, "The image process stopped unexpectedly (killed, crashed or out of memory).", system_fault=True
            )
        except FileNotFoundError as exc:
            missing = "The original file is missing from storage." if exc.filename == source else (
                f"A file vanished while the outputs were written ({exc.strerror or exc}).")
            return await self._fail(job, missing, system_fault=True)
        except OSError as exc:
            return await self._fail(job, f"Storage error: {exc.strerror or exc}.", system_fault=True)
        except MemoryError:
            return await self._fail(job, "Not enough memory to process this image.", system_fault=True)
        except Exception as exc:  # never let one job end a worker
            log.exception("job %d failed unexpectedly", job.id)
            return await self._fail(job, f"Unexpected error: {type(exc).__name__}: {exc}", system_fault=False)
        outputs = [OutputFile(r.name, r.width, r.height, r.size_bytes, r.placeholder, format=spec.format,
                              spec=self._fingerprints[spec.name], source_sha256=claimed.sha256)
                   for r, spec in zip(results, specs, strict=True)]
        if await self.queue.complete(job, outputs) is None:
            await self._drop_lost_result(claimed, outputs)
        else:  # an output whose format changed leaves its old file, which nothing refers to now
            await self.storage.remove_other_formats(job.photo_id, [(spec.name, spec.format) for spec in specs])
        return "complete"

    async def _drop_lost_result(self, claimed: ClaimedJob, outputs: Sequence[OutputFile]) -> None:
        """The job's lease was lost while it ran (the photo was deleted, or the lease expired and the job was claimed
        again): its result was not recorded, and the files it wrote are removed unless they are what the photo's
        outputs now refer to (the lease's new holder renders the same original into the same names)."""
        job = claimed.job
        photo = await self.queue.db.get_photo(job.photo_id)
        if photo is None:
            await self.storage.remove_photo_files([job.photo_id], [])
            return
        log.info("job %d (%s of photo %d) lost its lease while it ran; its result is dropped",
                 job.id, job.kind, job.photo_id)
        if photo.sha256 == claimed.sha256 and getattr(photo, f"{job.kind}_status") in (Status.PENDING,
                                                                                       Status.PROCESSING):
            return  # the job's new lease holder renders these very files (same original, same names) meanwhile
        recorded = await self.queue.db.photo_outputs(job.photo_id) if photo.sha256 == claimed.sha256 else {}
        stray = [(o.name, o.format) for o in outputs if o.name not in recorded and o.format is not None]
        await self.storage.remove_outputs(job.photo_id, stray)

    async def _fail(self, job: Job, error: str, system_fault: bool) -> str:
        await self.queue.fail(job, error, system_fault=system_fault)
        return "retry" if job.attempts < job.max_attempts else "failed"

    async def _keep_leases(self) -> None:
        interval = self.settings.queue.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.queue.renew(list(self._running.values()))
            except Exception:
                log.exception("could not renew job leases")

    async def _sweep_expired(self) -> None:
        while True:
            await asyncio.sleep(self.settings.queue.sweep_interval_seconds)
            try:
                await self.queue.sweep_expired_leases()
            except Exception:
                log.exception("could not sweep expired leases")
