"""The admin token: where it comes from, and how a candidate is compared with it."""

from __future__ import annotations

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

    def token_matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())


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
