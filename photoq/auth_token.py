"""The admin token: where it comes from, and the values derived from it (session cookie, CSRF token)."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Credentials:
    token: str
    generated: bool = False  # True when this start created the token file

    def _derive(self, purpose: str) -> str:
        return hmac.new(self.token.encode(), purpose.encode(), hashlib.sha256).hexdigest()

    @property
    def session_value(self) -> str:
        """The session cookie's value: derived, so the cookie never carries the token itself."""
        return self._derive("photoq session v1")

    @property
    def csrf_token(self) -> str:
        return self._derive("photoq csrf v1")[:40]

    def token_matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def session_matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.session_value.encode())

    def csrf_matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.csrf_token.encode())


def read_token(token_path: Path) -> str | None:
    try:
        return token_path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


def load_credentials(configured: str | None, token_path: Path) -> Credentials:
    """The configured token, else the one saved in the data directory, else a new one saved there (mode 0600)."""
    if configured:
        return Credentials(configured)
    saved = read_token(token_path)
    if saved:
        return Credentials(saved)
    token = secrets.token_urlsafe(32)
    token_path.parent.mkdir(parents=True, exist_ok=True)
    temp = token_path.with_name(token_path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, token_path)
    return Credentials(token, generated=True)
