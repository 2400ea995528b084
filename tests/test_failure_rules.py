"""Which failures follow a file and which are the system's (DESIGN: a file that cannot be decoded fails for good at
once; failures that follow one file count against that file; only causes spanning different photos, or the
environment, open the circuit breaker)."""

from __future__ import annotations

import io

from PIL import Image

from photoq.queue import CircuitBreaker, Failure

from .hostile import jpeg_truncated_in_scan
from .support import jpeg, until, wait_for_photos
from .test_queue_behaviour import get, make_album, upload


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_file_failing_again_and_again_never_opens_the_breaker():
    breaker = CircuitBreaker(threshold=3, cooldown=60, clock=FakeClock())
    for _ in range(10):
        assert not breaker.record_failure(7, Failure.SUSPECT, "crashed")
        assert not breaker.record_failure(7, Failure.FILE, "Not enough memory")
        assert not breaker.record_failure(8, Failure.UNREADABLE, "corrupt")
    assert breaker.state == "closed"


def test_memory_errors_of_different_files_never_open_the_breaker():
    breaker = CircuitBreaker(threshold=2, cooldown=60, clock=FakeClock())
    for photo_id in range(10):
        assert not breaker.record_failure(photo_id, Failure.FILE, "Not enough memory")
    assert breaker.state == "closed"


def test_crashes_across_different_photos_open_the_breaker_then_half_open_then_closed():
    clock = FakeClock()
    breaker = CircuitBreaker(threshold=3, cooldown=60, clock=clock)
    assert not breaker.record_failure(1, Failure.SUSPECT, "crashed")
    assert not breaker.record_failure(1, Failure.SUSPECT, "crashed")  # the same photo again: still one photo
    assert not breaker.record_failure(2, Failure.SUSPECT, "crashed")
    assert breaker.record_failure(3, Failure.SUSPECT, "crashed")  # three different photos in a row
    assert breaker.state == "open" and not breaker.allows_claims()
    clock.now += 59
    assert breaker.state == "open"
    clock.now += 2
    assert breaker.state == "half_open" and breaker.allows_claims()
    assert breaker.record_failure(4, Failure.SUSPECT, "crashed")  # the trial job failed: open again
    assert breaker.state == "open"
    clock.now += 61
    assert breaker.state == "half_open"
    breaker.record_success()
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
    # A success in between starts the count again.
    assert not breaker.record_failure(5, Failure.SUSPECT, "crashed")
    assert not breaker.record_failure(6, Failure.SUSPECT, "crashed")
    breaker.record_success()
    assert not breaker.record_failure(7, Failure.SUSPECT, "crashed")
    assert breaker.state == "closed"


def test_environment_failures_open_the_breaker_by_themselves():
    breaker = CircuitBreaker(threshold=2, cooldown=60, clock=FakeClock())
    assert not breaker.record_failure(1, Failure.ENVIRONMENT, "disk full")
    assert breaker.record_failure(1, Failure.ENVIRONMENT, "disk full")
    assert breaker.state == "open" and breaker.last_error == "disk full"
    other = CircuitBreaker(threshold=2, cooldown=60, clock=FakeClock())
    assert not other.record_failure(None, Failure.ENVIRONMENT, "database is locked")
    assert other.record_failure(None, Failure.ENVIRONMENT, "database is locked")


async def test_a_file_that_cannot_be_decoded_fails_for_good_at_its_first_attempt(start_client):
    client = await start_client(queue={"max_attempts": 3})
    album = await make_album(client)
    [photo_id] = await upload(client, album, ("cut.jpg", jpeg_truncated_in_scan(5)))

    async def both_parts_failed() -> bool:
        photo = await get(client, f"/api/photos/{photo_id}")
        return photo["thumbnail_status"] == photo["variant_status"] == "failed"

    await until(both_parts_failed, timeout=60, what="both parts failed")
    photo = await get(client, f"/api/photos/{photo_id}")
    assert "cannot be decoded" in photo["error"]
    history = (await get(client, f"/api/photos/{photo_id}/history"))["attempts"]
    by_kind = {kind: [a for a in history if a["kind"] == kind] for kind in ("thumbnail", "variant")}
    for kind, attempts in by_kind.items():
        assert [(a["attempt"], a["outcome"]) for a in attempts] == [(1, "failed")], (kind, attempts)
        assert attempts[0]["retry_at"] is None and attempts[0]["error"]
    queue = await get(client, "/api/admin/queue")
    assert queue["circuit_breaker"]["state"] == "closed" and queue["circuit_breaker"]["consecutive_failures"] == 0


def huge_16_bit_png(side: int, seed: int) -> bytes:
    """A valid 16-bit greyscale PNG that compresses to little but decodes to side*side*2 bytes and more."""
    gradient = Image.linear_gradient("L").resize((side, side)).point(lambda v: (v + seed) % 256)
    wide = gradient.convert("I").point(lambda v: v * 257).convert("I;16")
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG")
    return buffer.getvalue()


async def test_huge_files_out_of_memory_in_the_image_process_fail_alone_and_never_hold_a_good_jpeg(start_client):
    """Three valid 16-bit PNGs too big for the image processes' memory (an address-space limit, as on a small
    board): each fails for good after its attempts with its reason; the breaker stays closed and a good JPEG
    uploaded behind them completes."""
    client = await start_client(
        processing={"workers": 2, "image_process_memory_mb": 64, "memory_budget_mb": 0},
        queue={"max_attempts": 2, "breaker_threshold": 2, "breaker_cooldown_seconds": 600,
               "backoff_base_seconds": 0.1, "backoff_max_seconds": 0.2},
        upload={"max_pixels": 100_000_000},
    )
    album = await make_album(client)
    huge = await upload(client, album, *[(f"huge-{i}.png", huge_16_bit_png(7000, i)) for i in range(3)])
    [good] = await upload(client, album, ("good.jpg", jpeg(seed=77)))

    await wait_for_photos(client, [good], timeout=120)
    final = await wait_for_photos(client, huge, statuses=("failed",), timeout=180)
    for photo_id in huge:
        assert "memory" in final[photo_id]["error"].lower(), final[photo_id]["error"]
        history = (await get(client, f"/api/photos/{photo_id}/history"))["attempts"]
        thumbnail = [a["outcome"] for a in history if a["kind"] == "thumbnail"]
        assert thumbnail == ["retry", "failed"], history  # counted against the file, up to its attempts
    queue = await get(client, "/api/admin/queue")
    assert queue["circuit_breaker"]["state"] == "closed", queue["circuit_breaker"]
