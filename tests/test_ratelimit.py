"""Rate limiting: the token bucket on a fake clock, and 429 with Retry-After end to end."""

from __future__ import annotations

import math

import pytest

from photoq.config import ConfigError, RateLimitSettings, load_settings
from photoq.ratelimit import RateLimiter, TokenBucket, retry_after_seconds
from photoq.web.keys import STORAGE

from .support import AUTH, jpeg, multipart


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_of_capacity_then_refills_at_the_rate():
    bucket = TokenBucket(capacity=3, refill_per_second=2, tokens=3, updated=0.0)
    assert [bucket.take(1, 0.0) for _ in range(3)] == [0, 0, 0]
    assert bucket.take(1, 0.0) == pytest.approx(0.5)  # one token comes back after half a second
    assert bucket.take(1, 0.25) == pytest.approx(0.25)
    assert bucket.take(1, 0.5) == 0
    assert bucket.take(1, 100.0) == 0  # a long pause refills only up to capacity
    assert bucket.tokens == pytest.approx(2)


def test_a_refused_request_spends_nothing():
    bucket = TokenBucket(capacity=2, refill_per_second=1, tokens=0.5, updated=0.0)
    assert bucket.take(1, 0.0) == pytest.approx(0.5)
    assert bucket.tokens == pytest.approx(0.5)


def test_a_cost_above_capacity_can_never_be_paid():
    bucket = TokenBucket(capacity=2, refill_per_second=1, tokens=2, updated=0.0)
    assert bucket.take(3, 0.0) == math.inf
    assert retry_after_seconds(math.inf) > 0


def test_fractional_costs_make_cheap_requests_cheap():
    clock = FakeClock()
    limiter = RateLimiter(capacity=10, refill_per_second=1, clock=clock)
    assert all(limiter.check("a", 0.1) == 0 for _ in range(100))
    assert limiter.check("a", 0.1) > 0
    assert limiter.check("a", 0) == 0  # free requests always pass


def test_each_client_has_its_own_bucket():
    clock = FakeClock()
    limiter = RateLimiter(capacity=2, refill_per_second=1, clock=clock)
    assert limiter.check("10.0.0.1") == 0 and limiter.check("10.0.0.1") == 0
    assert limiter.check("10.0.0.1") == pytest.approx(1.0)
    assert limiter.check("10.0.0.2") == 0  # a noisy neighbour does not use up anyone else's tokens
    clock.now += 1
    assert limiter.check("10.0.0.1") == 0


def test_memory_stays_bounded_and_idle_clients_are_forgotten_first():
    clock = FakeClock()
    limiter = RateLimiter(capacity=5, refill_per_second=1, max_clients=100, clock=clock)
    for i in range(10_000):  # a flood of addresses, each seen once
        limiter.check(f"10.{i // 256}.{i % 256}.1")
        assert len(limiter) <= 100
    limiter = RateLimiter(capacity=5, refill_per_second=1, max_clients=3, clock=clock)
    for key in ("a", "b", "c"):
        for _ in range(5):
            limiter.check(key)
    clock.now += 10
    limiter.check("d")  # a, b and c are full again (a new bucket would be the same): they go, d stays
    assert len(limiter) == 1


@pytest.mark.parametrize("wait, expected", [(0.01, 1), (1.0, 1), (1.2, 2), (59.5, 60)])
def test_retry_after_is_whole_seconds_rounded_up(wait, expected):
    assert retry_after_seconds(wait) == expected


def test_limits_come_from_config_and_are_checked(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[ratelimit]\ncapacity = 50\nrefill_per_second = 2.5\nfile_request_cost = 0\n")
    settings = load_settings(config, environ={}).ratelimit
    assert settings == RateLimitSettings(enabled=True, capacity=50, refill_per_second=2.5, file_request_cost=0)
    for bad in ("capacity = 0", "refill_per_second = -1", "file_request_cost = -0.5", 'enabled = "maybe"'):
        config.write_text(f"[ratelimit]\n{bad}\n")
        with pytest.raises(ConfigError, match="ratelimit"):
            load_settings(config, environ={})


def test_defaults_leave_room_for_a_gallery_page_and_stop_a_runaway_client():
    defaults = RateLimitSettings()
    assert defaults.enabled
    # A gallery page of 500 thumbnails plus its page, styles and API calls fits in one burst...
    assert 500 * defaults.file_request_cost + 50 < defaults.capacity
    # ...while a loop of thousands of requests a second is held to the refill rate.
    assert defaults.refill_per_second <= 100


async def test_a_runaway_client_gets_429_with_retry_after_and_others_are_not_affected(start_client):
    client = await start_client(ratelimit={"capacity": 5, "refill_per_second": 0.5})
    statuses = []
    for _ in range(5):
        async with client.get("/api/albums", headers=AUTH) as r:
            statuses.append(r.status)
    assert statuses == [200] * 5
    async with client.get("/api/albums", headers=AUTH) as r:
        assert r.status == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 2
        assert r.headers["Content-Type"].startswith("application/json")
        body = await r.json()
        assert body["error"] == "rate_limited" and body["message"]
    # Uploads are refused the same way, before any byte is stored.
    async with client.post("/api/albums/1/photos", data=multipart(("a.jpg", jpeg(64, 64))), headers=AUTH) as r:
        assert r.status == 429 and "Retry-After" in r.headers
    # Without a token too: a flood of unauthenticated requests is limited like any other.
    async with client.get("/api/albums") as r:
        assert r.status == 429
    # Health checks are never limited.
    async with client.get("/healthz") as r:
        assert r.status == 200
    assert list(client.app[STORAGE].tmp.iterdir()) == []


async def test_image_files_are_cheap_so_a_gallery_page_fits(start_client):
    client = await start_client(ratelimit={"capacity": 10, "refill_per_second": 0.001, "file_request_cost": 1 / 16})
    async with client.post("/api/albums", json={"name": "G"}, headers=AUTH) as r:
        album = (await r.json())["id"]
    async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(64, 64))),
                           headers=AUTH) as r:
        photo_id = (await r.json())["photos"][0]["id"]
    for _ in range(100):  # 100 x 1/16 = 6.25 of the 8 tokens left after the two requests above
        async with client.get(f"/api/photos/{photo_id}/file?variant=thumb-150", headers=AUTH) as r:
            assert r.status == 200
    async with client.get("/api/albums", headers=AUTH) as r:
        assert r.status == 200  # 1.75 tokens were left
    async with client.get("/api/albums", headers=AUTH) as r:
        assert r.status == 429


async def test_rate_limiting_can_be_switched_off(start_client):
    client = await start_client(ratelimit={"enabled": False, "capacity": 1, "refill_per_second": 0.001})
    for _ in range(20):
        async with client.get("/api/albums", headers=AUTH) as r:
            assert r.status == 200
