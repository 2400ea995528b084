"""Behind a reverse proxy: X-Forwarded-For / X-Forwarded-Proto are believed from trusted proxies only, and then the
session cookie, the rate limiter and the access log see the real client. The test client connects from 127.0.0.1."""

from __future__ import annotations

from ipaddress import ip_network

import aiohttp
import pytest
from multidict import CIMultiDict

from photoq.config import ConfigError, load_settings
from photoq.web.proxy import client_hop, parse_address

from .support import AUTH, ServerProcess, SseReader, jpeg, log_in, multipart

LOCAL = (ip_network("127.0.0.1"), ip_network("::1"))
# Capacity 2 and a refill of one token in about a day: the third request of a bucket is refused.
TINY_BUCKETS = {"capacity": 2, "refill_per_second": 0.00001}


def trusting(*networks: str) -> dict:
    return {"trusted_proxies": tuple(ip_network(n, strict=False) for n in networks)}


async def stats_status(client, forwarded_for: str | None = None) -> int:
    headers = dict(AUTH)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    async with client.get("/api/stats", headers=headers) as response:
        assert response.status in (200, 429), await response.text()
        return response.status


async def exhaust(client, forwarded_for: str | None = None) -> None:
    assert [await stats_status(client, forwarded_for) for _ in range(2)] == [200, 200]
    assert await stats_status(client, forwarded_for) == 429


async def login_cookie(client, headers: dict) -> str:
    response = await log_in(client, headers=headers)
    return response.headers["Set-Cookie"]


def is_secure(set_cookie: str) -> bool:
    return "secure" in [part.strip().lower() for part in set_cookie.split(";")]


# --- the session cookie's Secure flag follows the scheme the client used ---

async def test_a_trusted_proxy_that_terminated_tls_makes_the_session_cookie_secure(start_client):
    client = await start_client(server=trusting("127.0.0.1"))
    assert is_secure(await login_cookie(client, {"X-Forwarded-Proto": "https"}))
    assert not is_secure(await login_cookie(client, {"X-Forwarded-Proto": "http"}))
    assert not is_secure(await login_cookie(client, {}))


# Nobody trusted, and trusted proxies elsewhere than the peer (127.0.0.1).
UNTRUSTED_PEER = [{}, trusting("10.0.0.0/8", "::1")]


@pytest.mark.parametrize("server", UNTRUSTED_PEER)
async def test_an_untrusted_peer_cannot_claim_https(start_client, server):
    client = await start_client(server=server)
    assert not is_secure(await login_cookie(client, {"X-Forwarded-Proto": "https"}))


@pytest.mark.parametrize("proto", ["", "ftp", "https, garbage", "https://", "h" * 4000])
async def test_a_malformed_forwarded_proto_keeps_the_peer_scheme(start_client, proto):
    client = await start_client(server=trusting("127.0.0.1"))
    assert not is_secure(await login_cookie(client, {"X-Forwarded-Proto": proto}))


async def test_the_proto_of_the_clients_hop_when_every_proxy_appended_one(start_client):
    client = await start_client(server=trusting("127.0.0.1", "10.0.0.0/8"))
    headers = {"X-Forwarded-For": "203.0.113.5, 10.0.0.2", "X-Forwarded-Proto": "https, http"}
    assert is_secure(await login_cookie(client, headers))  # the client spoke https to the outer proxy


# --- the rate limiter keys on the real client ---

@pytest.mark.parametrize("server", UNTRUSTED_PEER)
async def test_an_untrusted_peer_cannot_dodge_the_rate_limit_with_x_forwarded_for(start_client, server):
    client = await start_client(ratelimit=TINY_BUCKETS, server=server)
    await exhaust(client)
    for spoofed in ("198.51.100.1", "198.51.100.2", "2001:db8::7"):
        assert await stats_status(client, spoofed) == 429


async def test_clients_behind_a_trusted_proxy_get_their_own_buckets(start_client):
    client = await start_client(ratelimit=TINY_BUCKETS, server=trusting("127.0.0.1", "::1"))
    await exhaust(client, "198.51.100.1")
    assert await stats_status(client, "198.51.100.2") == 200  # one heavy client does not lock out the others
    assert await stats_status(client, "2001:db8::7") == 200
    assert await stats_status(client) == 200  # nor the proxy's own requests
    assert await stats_status(client, "::ffff:198.51.100.1") == 429  # the same client, as a dual-stack socket says it


async def test_the_client_is_the_right_most_address_that_is_not_a_trusted_proxy(start_client):
    # client "203.0.113.5" sent a made-up X-Forwarded-For; the outer proxy 10.0.0.2 appended the real address, and
    # photoq's peer 127.0.0.1 appended 10.0.0.2. Both proxies are trusted.
    client = await start_client(ratelimit=TINY_BUCKETS, server=trusting("127.0.0.1", "10.0.0.0/8"))
    await exhaust(client, "198.51.100.66, 203.0.113.5, 10.0.0.2")
    assert await stats_status(client, "198.51.100.67, 203.0.113.5, 10.0.0.2") == 429  # a new lie: the same bucket
    assert await stats_status(client, "garbage, 203.0.113.5, 10.0.0.2") == 429
    assert await stats_status(client, "203.0.113.5") == 429
    assert await stats_status(client, "198.51.100.66, 203.0.113.6, 10.0.0.2") == 200  # someone else


@pytest.mark.parametrize("forwarded_for", [
    "", "   ", ",", "garbage", "unknown", "_hidden", "[2001:db8::1]", "[2001:db8::1]:4711", "203.0.113.5:8080",
    "2001:db8::1]", "203.0.113.5, not-an-address", "203.0.113.5 203.0.113.6", "999.1.1.1", "g" * 8000,
])
async def test_a_malformed_x_forwarded_for_falls_back_to_the_peer(start_client, forwarded_for):
    client = await start_client(ratelimit=TINY_BUCKETS, server=trusting("127.0.0.1"))
    await exhaust(client)  # the peer's own bucket
    assert await stats_status(client, forwarded_for) == 429


async def test_several_x_forwarded_for_lines_are_one_list(start_client):
    client = await start_client(ratelimit=TINY_BUCKETS, server=trusting("127.0.0.1", "10.0.0.0/8"))
    await exhaust(client, "203.0.113.5")
    for lines in (["203.0.113.5", "10.0.0.2"], ["198.51.100.9", "203.0.113.5, 10.0.0.2"]):
        headers = CIMultiDict([("Authorization", AUTH["Authorization"])])
        for line in lines:
            headers.add("X-Forwarded-For", line)
        async with client.get("/api/stats", headers=headers) as response:
            assert response.status == 429, lines


def test_chain_selection_without_a_server():
    trusted = (*LOCAL, ip_network("10.0.0.0/8"))
    assert client_hop(["198.51.100.66", "203.0.113.5", "10.0.0.2"], trusted) == (1, parse_address("203.0.113.5"))
    assert client_hop(["10.0.0.3", "10.0.0.2"], trusted) == (0, parse_address("10.0.0.3"))  # all proxies
    assert client_hop(["203.0.113.5", "garbage"], trusted) is None
    assert client_hop([" 2001:DB8::1 "], trusted) == (0, parse_address("2001:db8::1"))
    assert str(parse_address("::ffff:10.0.0.1")) == "10.0.0.1"


async def test_uploads_and_the_event_stream_work_through_a_trusted_proxy(start_client):
    client = await start_client(server=trusting("127.0.0.1"))
    forwarded = {**AUTH, "X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}
    async with client.post("/api/albums", json={"name": "Proxied"}, headers=forwarded) as r:
        assert r.status == 201
        album = (await r.json())["id"]
    async with client.get("/api/events", headers=forwarded) as events:
        assert events.status == 200
        reader = SseReader(events)
        assert (await reader.next()).name == "stats"
        async with client.post(f"/api/albums/{album}/photos", data=multipart(("a.jpg", jpeg(seed=90))),
                               headers=forwarded) as r:
            assert r.status == 202, await r.text()
            photo_id = (await r.json())["photos"][0]["id"]
        while (event := await reader.next()).name != "photo" or event.data["id"] != photo_id:
            pass


# --- the access log of a real `photoq serve` ---

async def test_the_access_log_shows_the_forwarded_client(tmp_path):
    server = ServerProcess(tmp_path / "data", workers=1, extra_env={"PHOTOQ_TRUSTED_PROXIES": "127.0.0.1, ::1"})
    try:
        server.start()
        async with aiohttp.ClientSession(base_url=server.url) as session:
            async with session.get("/healthz", headers={"X-Forwarded-For": "198.51.100.23"}) as r:
                assert r.status == 200
            async with session.get("/api/stats", headers={**AUTH, "X-Forwarded-For": "1.1.1.1, 203.0.113.9"}) as r:
                assert r.status == 200
            async with session.get("/api/albums", headers={**AUTH, "X-Forwarded-For": "nonsense"}) as r:
                assert r.status == 200
        assert server.terminate() == 0
    finally:
        server.stop()
    log = server.log()
    assert '198.51.100.23 "GET /healthz" 200' in log
    assert '203.0.113.9 "GET /api/stats" 200' in log and "1.1.1.1" not in log
    assert '127.0.0.1 "GET /api/albums" 200' in log


# --- configuration ---

def test_trusted_proxies_from_the_file_and_the_environment(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[server]\ntrusted_proxies = ["127.0.0.1", "::1", "192.168.1.7/24"]\n')
    assert load_settings(config, environ={}).server.trusted_proxies == (
        ip_network("127.0.0.1/32"), ip_network("::1/128"), ip_network("192.168.1.0/24"))
    from_env = load_settings(config, environ={"PHOTOQ_TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8"})
    assert from_env.server.trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))
    assert load_settings(environ={}).server.trusted_proxies == ()


@pytest.mark.parametrize("value", ['["10.0.0.0/33"]', '["localhost"]', '["10.0.0.1", ""]', '[1]', "5",
                                   '["10.0.0.0/8/8"]', '["[::1]"]'])
def test_a_bad_trusted_proxy_names_the_key(tmp_path, value):
    config = tmp_path / "config.toml"
    config.write_text(f"[server]\ntrusted_proxies = {value}\n")
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies"):
        load_settings(config, environ={})


def test_a_bad_trusted_proxy_in_the_environment_names_the_variable():
    with pytest.raises(ConfigError, match="PHOTOQ_TRUSTED_PROXIES"):
        load_settings(environ={"PHOTOQ_TRUSTED_PROXIES": "127.0.0.1,proxy.lan"})
