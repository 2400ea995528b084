"""Cluster mode's pure parts: bridge messages under the payload limit, the cluster-wide ETA, the database breaker,
and which errors count as a database outage."""

from __future__ import annotations

import json
import sqlite3

import pytest

from photoq.cluster import encode
from photoq.db import DatabaseUnavailable, EventBridge, database_unavailable
from photoq.eta import ThroughputMeter, combined_estimate, estimate_from_capacity
from photoq.queue import CircuitBreaker

from .support import free_port


def photo(i: int, error: str | None = None) -> dict:
    return {"id": i, "album_id": 1 + i % 3, "processing_status": "complete", "thumbnail_status": "complete",
            "variant_status": "complete", "error": error, "thumbhash": "x" * 40}


def test_a_batch_of_photo_events_is_split_under_the_payload_limit_in_order():
    photos = [photo(i) for i in range(500)]
    payloads = encode("node-a", "photo", photos)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= EventBridge.MAX_PAYLOAD_BYTES for p in payloads)
    decoded = [json.loads(p) for p in payloads]
    assert {m["n"] for m in decoded} == {"node-a"} and {m["k"] for m in decoded} == {"photo"}
    assert [item for m in decoded for item in m["d"]] == photos


def test_a_small_change_is_one_message():
    assert [json.loads(p) for p in encode("n", "stats", [None, 4])] == [{"n": "n", "k": "stats", "d": [None, 4]}]
    assert len(encode("n", "photo", [photo(1)])) == 1


def test_a_photo_too_big_to_send_becomes_a_stats_change_of_its_album():
    huge = photo(7, error="é" * 5000)  # 10 000 bytes of UTF-8
    payloads = encode("n", "photo", [photo(1), huge, photo(2)])
    decoded = [json.loads(p) for p in payloads]
    assert all(len(p.encode()) <= EventBridge.MAX_PAYLOAD_BYTES for p in payloads)
    assert {"n": "n", "k": "stats", "d": [huge["album_id"], None]} in decoded
    assert [item["id"] for m in decoded if m["k"] == "photo" for item in m["d"]] == [1, 2]


def test_cluster_eta_adds_the_nodes_rates():
    remaining = {"thumbnail": 10, "variant": 10}
    pi = {"costs": {"thumbnail": 1.0, "variant": 3.0}, "parallelism": 2.0}  # 40 worker-s of work at 2: 20 s
    desktop = {"costs": {"thumbnail": 0.5, "variant": 1.5}, "parallelism": 4.0}  # 20 worker-s at 4: 5 s
    assert estimate_from_capacity(pi, remaining) == pytest.approx(20.0)
    assert estimate_from_capacity(desktop, remaining) == pytest.approx(5.0)
    assert combined_estimate([20.0, 5.0]) == pytest.approx(4.0)  # together: 1 / (1/20 + 1/5)
    assert combined_estimate([None, 5.0]) == pytest.approx(5.0)  # a web node measures nothing itself
    assert combined_estimate([None, None]) is None
    assert estimate_from_capacity({"costs": {"thumbnail": 1.0}, "parallelism": 1.0}, remaining) is None
    assert estimate_from_capacity({"bogus": 1}, remaining) is None


def test_a_node_reports_its_capacity_once_it_measured_enough():
    now = [0.0]
    meter = ThroughputMeter(clock=lambda: now[0], min_completions=2)
    assert meter.capacity() is None
    for job_id in (1, 2):
        meter.started(job_id, "thumbnail")
        now[0] += 2.0
        meter.finished(job_id, completed=True)
    capacity = meter.capacity()
    assert capacity == {"costs": {"thumbnail": 2.0}, "parallelism": pytest.approx(1.0)}
    assert estimate_from_capacity(capacity, {"thumbnail": 3}) == pytest.approx(meter.estimate({"thumbnail": 3}))


def test_the_breaker_opens_at_once_for_a_database_outage_and_half_opens_after():
    now = [0.0]
    breaker = CircuitBreaker(threshold=5, cooldown=60, clock=lambda: now[0])
    assert breaker.open_for(5.0, "gone") is True
    assert breaker.state == "open" and not breaker.allows_claims()
    assert breaker.open_for(5.0, "still gone") is False  # already open: not a new outage
    now[0] = 5.1
    assert breaker.state == "half_open" and breaker.allows_claims()
    breaker.record_success()
    assert breaker.state == "closed"


def test_a_locked_sqlite_database_is_an_outage_a_bad_statement_is_not(tmp_path):
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    assert database_unavailable(locked.value)
    with pytest.raises(sqlite3.OperationalError) as bad:
        holder.execute("SELECT nope FROM t")
    assert not database_unavailable(bad.value)
    holder.execute("ROLLBACK")


async def test_an_unreachable_postgresql_is_an_outage():
    import asyncpg

    with pytest.raises(OSError) as refused:
        await asyncpg.connect(f"postgresql://nobody@127.0.0.1:{free_port()}/none", timeout=5)
    assert database_unavailable(refused.value)
    try:
        raise RuntimeError("while recording") from DatabaseUnavailable("gone")
    except RuntimeError as wrapped:
        assert database_unavailable(wrapped)
    assert not database_unavailable(ValueError("bad"))
    assert not database_unavailable(OSError(28, "No space left on device"))


async def test_only_long_dead_staged_uploads_are_forgotten(tmp_path):
    """With a shared database, start-up must leave another node's upload between its stage and its commit alone."""
    from photoq.db import Database

    db = Database(tmp_path / "photoq.db")
    await db.open()
    removed: list[str] = []

    async def remove(paths):
        removed.extend(paths)

    try:
        [old] = await db.stage_files([("originals/aa/bb/old.jpg", "a" * 64)], 1000.0)
        [fresh] = await db.stage_files([("originals/cc/dd/fresh.jpg", "c" * 64)], 5000.0)
        assert await db.unstage_older_than(2000.0, remove) == 1
        assert removed == ["originals/aa/bb/old.jpg"]
        await db.unstage([fresh], remove)  # the live upload's own path still finds its row
        assert removed == ["originals/aa/bb/old.jpg", "originals/cc/dd/fresh.jpg"]
    finally:
        await db.close()
