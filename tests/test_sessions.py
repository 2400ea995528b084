"""Web sessions are random, server-side and revocable; printed login links carry a one-time code, never the token;
wrong tokens and codes from one address meet growing delays."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
from ipaddress import ip_network

import aiohttp
import pytest

from photoq.config import AuthSettings
from photoq.db import Database
from photoq.login_throttle import LoginThrottle
from photoq.sessions import DAY, TOUCH_EVERY_SECONDS, SessionStore, digest
from photoq.web.keys import SESSIONS, STORAGE

from .support import AUTH, TEST_TOKEN, ServerProcess, log_in

COOKIE = "photoq_session"


def cookie_of(response) -> str:
    return response.cookies[COOKIE].value


async def fresh_login(client) -> tuple[str, str]:
    """(session cookie, its CSRF token) of a new login through the form, without touching the client's jar."""
    async with client.post("/login", data={"token": TEST_TOKEN, "next": "/"}, allow_redirects=False) as r:
        assert r.status == 303
        session_id = cookie_of(r)
    client.session.cookie_jar.clear()
    return session_id, client.app[SESSIONS].csrf_token(session_id)


def with_cookie(session_id: str, **extra) -> dict:
    return {"Cookie": f"{COOKIE}={session_id}", **extra}


# -- sessions (finding 7) ------------------------------------------------------------------------------------------


async def test_a_cookie_captured_before_logout_is_refused_after_it(client):
    session_id, csrf = await fresh_login(client)
    async with client.get("/api/albums", headers=with_cookie(session_id)) as r:
        assert r.status == 200
    async with client.post("/logout", data={"csrf_token": csrf}, headers=with_cookie(session_id),
                           allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/login"
    # The captured cookie and CSRF token no longer read or write anything.
    async with client.get("/api/albums", headers=with_cookie(session_id)) as r:
        assert r.status == 401
    async with client.get("/", headers=with_cookie(session_id), allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/login")
    async with client.post("/api/albums", json={"name": "After"}, headers=with_cookie(session_id, **{
            "X-CSRF-Token": csrf})) as r:
        assert r.status == 401
    # The API token keeps working as the contract says.
    async with client.get("/api/albums", headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["albums"] == []


async def test_each_login_is_a_new_random_session_with_its_own_csrf_token(client):
    first, first_csrf = await fresh_login(client)
    second, second_csrf = await fresh_login(client)
    assert first != second and first_csrf != second_csrf and len(first) >= 40
    assert TEST_TOKEN not in first
    # A session's CSRF token is bound to it: another session's is refused.
    async with client.post("/api/albums", json={"name": "X"}, headers=with_cookie(first, **{
            "X-CSRF-Token": second_csrf})) as r:
        assert r.status == 403 and (await r.json())["error"] == "csrf_failed"
    async with client.post("/api/albums", json={"name": "X"}, headers=with_cookie(first, **{
            "X-CSRF-Token": first_csrf})) as r:
        assert r.status == 201
    # The database keeps only a hash of each session id.
    conn = sqlite3.connect(client.app[STORAGE].database_path)
    stored = [row[0] for row in conn.execute("SELECT id_hash FROM sessions")]
    conn.close()
    assert len(stored) == 2 and first not in stored and second not in stored


async def test_log_out_everywhere_ends_every_session_but_not_the_api_token(client):
    phone, _ = await fresh_login(client)
    laptop, laptop_csrf = await fresh_login(client)
    async with client.get("/queue", headers=with_cookie(laptop)) as r:
        page = await r.text()
    assert 'action="/logout/everywhere"' in page and "End every session" in page
    async with client.post("/logout/everywhere", data={"csrf_token": laptop_csrf}, headers=with_cookie(laptop),
                           allow_redirects=False) as r:
        assert r.status == 303
    for session_id in (phone, laptop):
        async with client.get("/api/albums", headers=with_cookie(session_id)) as r:
            assert r.status == 401
    async with client.get("/api/albums", headers=AUTH) as r:
        assert r.status == 200
    # Without the CSRF token, nobody can log everyone out from another site.
    other, _ = await fresh_login(client)
    async with client.post("/logout/everywhere", headers=with_cookie(other), allow_redirects=False) as r:
        assert r.status == 403
    async with client.get("/api/albums", headers=with_cookie(other)) as r:
        assert r.status == 200


async def test_sessions_slide_while_used_and_end_when_idle_or_too_old(tmp_path):
    db = Database(tmp_path / "photoq.db")
    await db.open()
    now = [1_000_000.0]
    store = SessionStore(db, AuthSettings(session_idle_days=2, session_max_days=5), TEST_TOKEN, clock=lambda: now[0])
    try:
        idle = await store.start()
        used = await store.start()
        for _ in range(3):  # used every 1.5 days: it slides past its first expiry (2 days)
            now[0] += 1.5 * DAY
            assert await store.find(used.id) is not None
        assert await store.find(idle.id) is None  # unused for more than 2 days
        now[0] += 1.5 * DAY  # 6 days after the login: beyond session_max_days however it was used
        assert await store.find(used.id) is None
        assert await store.find("not-a-session") is None
        # Sliding costs a write at most once an hour per session.
        fresh = await store.start()
        created, seen, _ = await db.get_session(digest(fresh.id))
        now[0] += TOUCH_EVERY_SECONDS / 2
        await store.find(fresh.id)
        assert (await db.get_session(digest(fresh.id)))[1] == seen
    finally:
        await db.close()


# -- one-time login links (finding 8) ------------------------------------------------------------------------------


async def test_a_login_code_works_once_and_no_redirect_or_page_carries_the_token(client):
    code = await client.app[SESSIONS].mint_login_code()
    async with client.get(f"/login?code={code}&next=/queue", allow_redirects=False) as r:
        assert r.status == 303 and r.headers["Location"] == "/queue"
        assert code not in r.headers["Location"] and TEST_TOKEN not in str(r.headers)
        session_id = cookie_of(r)
    client.session.cookie_jar.clear()
    async with client.get("/queue", headers=with_cookie(session_id)) as r:
        assert r.status == 200 and TEST_TOKEN not in await r.text()
    async with client.get(f"/login?code={code}", allow_redirects=False) as r:
        assert r.status == 401 and COOKIE not in r.cookies
        assert "expired or was already used" in await r.text()


async def test_a_login_code_expires(tmp_path):
    db = Database(tmp_path / "photoq.db")
    await db.open()
    now = [1_000_000.0]
    store = SessionStore(db, AuthSettings(login_code_minutes=15), TEST_TOKEN, clock=lambda: now[0])
    try:
        late, in_time = await store.mint_login_code(), await store.mint_login_code()
        now[0] += 14 * 60
        assert await store.redeem_login_code(in_time)
        now[0] += 2 * 60
        assert not await store.redeem_login_code(late)
        conn = sqlite3.connect(db.path)
        assert late not in str(list(conn.execute("SELECT * FROM login_codes")))  # stored hashed
        conn.close()
    finally:
        await db.close()


async def test_token_links_are_refused_without_a_session_or_an_echo_of_the_token(client):
    for query in (f"token={TEST_TOKEN}", f"token={TEST_TOKEN}&next=/queue", "token=wrong"):
        async with client.get(f"/login?{query}", allow_redirects=False) as r:
            assert r.status == 400 and COOKIE not in r.cookies and "Location" not in r.headers
            page = await r.text()
            assert TEST_TOKEN not in page and "photoq login-url" in page


async def test_login_url_mints_a_code_the_running_server_accepts(tmp_path):
    server = ServerProcess(tmp_path / "data", workers=1)
    server.start()
    try:
        env = {**os.environ, "PHOTOQ_AUTH_TOKEN": TEST_TOKEN, "PHOTOQ_PORT": str(server.port)}
        env.pop("PHOTOQ_CONFIG", None)
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "photoq", "login-url", "--data-dir",
                                       str(server.data_dir)], capture_output=True, text=True, env=env,
                                       cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
        link = done.stdout.strip()
        assert re.fullmatch(rf"http://127\.0\.0\.1:{server.port}/login\?code=[\w-]{{20,}}", link), link
        assert TEST_TOKEN not in done.stdout + done.stderr
        async with aiohttp.ClientSession() as session:
            async with session.get(link, allow_redirects=False) as r:
                assert r.status == 303 and r.headers["Location"] == "/"
                cookie = r.cookies[COOKIE].value
            async with session.get(f"{server.url}/api/albums", headers=with_cookie(cookie)) as r:
                assert r.status == 200
            async with session.get(link, allow_redirects=False) as r:
                assert r.status == 401
    finally:
        server.stop()
    assert TEST_TOKEN not in server.log()


# -- growing delays for guesses (finding 9) ------------------------------------------------------------------------


def test_the_lockout_doubles_after_the_free_failures_and_is_capped():
    now = [0.0]
    throttle = LoginThrottle(free_failures=5, max_lockout=900, clock=lambda: now[0])
    assert [throttle.failed("a") for _ in range(5)] == [0] * 5
    assert throttle.retry_after("a") == 0
    lockouts = []
    for _ in range(12):
        lockouts.append(throttle.failed("a"))
        assert throttle.retry_after("a") == lockouts[-1]
        assert throttle.retry_after("b") == 0  # per address
        now[0] += lockouts[-1]
    assert lockouts == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900]
    throttle.succeeded("a")
    assert throttle.retry_after("a") == 0 and throttle.failed("a") == 0


@pytest.mark.parametrize("guess", ["form", "bearer", "code"])
async def test_repeated_wrong_guesses_get_429_with_retry_after_even_for_the_right_token(start_client, guess):
    client = await start_client(server={"trusted_proxies": (ip_network("127.0.0.1"),)}, auth={"login_free_failures": 3})
    attacker = {"X-Forwarded-For": "203.0.113.9"}

    async def attempt(token: str, address: dict) -> int:
        if guess == "form":
            request = client.post("/login", data={"token": token}, headers=address, allow_redirects=False)
        elif guess == "bearer":
            request = client.get("/api/albums", headers={**address, "Authorization": f"Bearer {token}"})
        else:
            request = client.get(f"/login?code={token}", headers=address, allow_redirects=False)
        async with request as r:
            if r.status == 429:
                assert int(r.headers["Retry-After"]) >= 1
            return r.status

    wrong = 401
    assert [await attempt("wrong-guess-0123456789", attacker) for _ in range(4)] == [wrong] * 4
    assert await attempt("wrong-guess-0123456789", attacker) == 429
    right = TEST_TOKEN if guess != "code" else await client.app[SESSIONS].mint_login_code()
    assert await attempt(right, attacker) == 429  # locked out: not even the right secret gets through
    assert await attempt(right if guess != "code" else await client.app[SESSIONS].mint_login_code(),
                         {"X-Forwarded-For": "198.51.100.7"}) in (200, 303)  # another address is not affected
