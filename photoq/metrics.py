"""Prometheus metrics: one registry per app (so several apps in one process do not collide) and its metrics.

Pure: the web handler in web/metrics.py sets the scrape-time gauges from the database and renders the registry.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Text exposition format 0.0.4, what generate_latest() writes and every Prometheus server reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

JOB_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
JOB_STATES = ("pending", "processing", "complete", "failed")
PHOTO_STATES = ("pending", "processing", "complete", "failed")
BREAKER_STATES = ("closed", "open", "half_open")
OUTCOMES = ("complete", "retry", "failed")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        # Observed as things happen.
        self.job_duration = Histogram(
            "photoq_job_duration_seconds", "Time a worker spent on a job, by job kind and outcome.",
            ["kind", "outcome"], buckets=JOB_DURATION_BUCKETS, registry=r,
        )
        self.job_retries = Counter("photoq_job_retries", "Failed job attempts that will be retried.", ["kind"],
                                   registry=r)
        self.job_failures = Counter("photoq_job_failures", "Jobs failed for good (dead-lettered).", ["kind"],
                                    registry=r)
        self.ingested_bytes = Counter("photoq_ingested_bytes", "Bytes of uploaded files accepted as new photos.",
                                      registry=r)
        self.ingested_photos = Counter("photoq_ingested_photos", "Uploaded files accepted as new photos.",
                                       registry=r)
        # Set at scrape time.
        self.jobs = Gauge("photoq_jobs", "Jobs in the queue by state.", ["state"], registry=r)
        self.photos = Gauge("photoq_photos", "Photos by processing status.", ["status"], registry=r)
        self.sse_clients = Gauge("photoq_sse_clients", "Open live-progress (SSE) connections.", registry=r)
        self.breaker = Gauge("photoq_circuit_breaker_state", "1 for the circuit breaker's current state.",
                             ["state"], registry=r)
        self.paused = Gauge("photoq_queue_paused", "1 while the queue is paused.", registry=r)
        # Set by the workers as jobs start and end (memory_budget.py).
        self.memory_reserved = Gauge("photoq_memory_reserved_bytes",
                                     "Estimated peak memory of the jobs running now.", registry=r)
        self.memory_budget = Gauge("photoq_memory_budget_bytes",
                                   "[processing] memory_budget_mb in bytes; 0 means no limit.", registry=r)
        self.memory_waits = Counter("photoq_memory_waits",
                                    "Times the next job waited for running jobs to free memory.", registry=r)

    # -- events ----------------------------------------------------------------------------------------------

    def observe_job(self, kind: str, outcome: str, seconds: float) -> None:
        self.job_duration.labels(kind=kind, outcome=outcome).observe(seconds)

    def job_failed(self, kind: str, will_retry: bool) -> None:
        (self.job_retries if will_retry else self.job_failures).labels(kind=kind).inc()

    def ingested(self, size_bytes: int) -> None:
        self.ingested_photos.inc()
        self.ingested_bytes.inc(size_bytes)

    # -- scrape ----------------------------------------------------------------------------------------------

    def set_state(self, *, job_counts: Mapping[str, int], photo_counts: Mapping[str, int], sse_clients: int,
                  breaker_state: str, paused: bool) -> None:
        for state in JOB_STATES:
            self.jobs.labels(state=state).set(job_counts.get(state, 0))
        for status in PHOTO_STATES:
            self.photos.labels(status=status).set(photo_counts.get(status, 0))
        self.sse_clients.set(sse_clients)
        for state in BREAKER_STATES:
            self.breaker.labels(state=state).set(1 if state == breaker_state else 0)
        self.paused.set(1 if paused else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
