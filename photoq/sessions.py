"""Web UI sessions and one-time login codes: random, server-side, revocable.

A session is a random id in an HttpOnly cookie; the database keeps only its SHA-256, so a copy of the database
cannot be replayed as a cookie. Expiry slides: each use extends a session to `session_idle_days` from then (written
at most once an hour), never beyond `session_max_days` after the login. Logging out deletes the session; logging out
everywhere deletes them all. The CSRF token of a session is an HMAC of its id (keyed with the admin token), so it
changes with every login and dies with the session.

A login code is what a printed login link carries instead of the admin token: random, stored as its SHA-256,
redeemed once, expired after `login_code_minutes`. Codes live in the database so that `photoq login-url`, a separate
process, can mint one the running server accepts.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import AuthSettings
from .db import Store

DAY = 86400.0
TOUCH_EVERY_SECONDS = 3600.0  # sliding expiry is written at most this often per session


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    id: str
    csrf_token: str
    expires_at: float


class SessionStore:
    def __init__(self, db: Store, settings: AuthSettings, admin_token: str, clock: Callable[[], float] = time.time):
        self.db = db
        self.settings = settings
        self._csrf_key = hmac.new(admin_token.encode(), b"photoq csrf key v2", hashlib.sha256).digest()
        self._clock = clock

    @property
    def cookie_max_age(self) -> int:
        return int(self.settings.session_max_days * DAY)

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_matches(self, session: Session, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), session.csrf_token.encode())

    def _session(self, session_id: str, expires_at: float) -> Session:
        return Session(session_id, self.csrf_token(session_id), expires_at)

    async def start(self) -> Session:
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + min(self.settings.session_idle_days, self.settings.session_max_days) * DAY
        await self.db.insert_session(digest(session_id), now, expires)
        return self._session(session_id, expires)

    async def find(self, session_id: str | None) -> Session | None:
        """The live session with this id (its expiry slid forward), or None."""
        if not session_id or len(session_id) > 128:
            return None
        id_hash = digest(session_id)
        row = await self.db.get_session(id_hash)
        now = self._clock()
        if row is None:
            return None
        created_at, last_seen_at, expires_at = row
        if expires_at <= now:
            await self.db.delete_session(id_hash)
            return None
        if now - last_seen_at >= TOUCH_EVERY_SECONDS:
            expires_at = min(now + self.settings.session_idle_days * DAY,
                             created_at + self.settings.session_max_days * DAY)
            await self.db.touch_session(id_hash, now, expires_at)
        return self._session(session_id, expires_at)

    async def end(self, session_id: str) -> None:
        await self.db.delete_session(digest(session_id))

    async def end_all(self) -> int:
        return await self.db.delete_all_sessions()

    async def mint_login_code(self) -> str:
        return await mint_login_code(self.db, self.settings, self._clock)

    async def redeem_login_code(self, code: str | None) -> bool:
        if not code or len(code) > 128:
            return False
        return await self.db.redeem_login_code(digest(code), self._clock())

    async def prune(self) -> int:
        return await self.db.delete_expired_sessions_and_codes(self._clock())


async def mint_login_code(db: Store, settings: AuthSettings, clock: Callable[[], float] = time.time) -> str:
    """A login code for a process that is not the server (`photoq login-url`): no admin token needed."""
    code = secrets.token_urlsafe(24)
    now = clock()
    await db.insert_login_code(digest(code), now, now + settings.login_code_minutes * 60)
    return code
