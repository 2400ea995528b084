"""A throwaway PostgreSQL server for the test session: Debian's server binaries, run as the postgres user (it refuses
root) in a temp dir, on a free port with its unix socket in that dir; stopped at the session's end. When it cannot
start the tests that need it fail loudly: no PostgreSQL test is ever skipped."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from .support import free_port


@dataclass
class PostgresServer:
    root: Path
    port: int
    user: str

    @property
    def socket_dir(self) -> str:
        return str(self.root)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: run .ci/ensure-postgresql (make test does)")
    return Path(found[-1]).parent


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", "postgres", "--", *args]


def start_postgres() -> PostgresServer:
    bin_dir = _bin_dir()
    root = Path(tempfile.mkdtemp(prefix="photoq-pg-"))
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "postgres")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    os.chmod(root, 0o700)
    data = root / "data"
    port = free_port()
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", user, "-A", "trust",
                                 "--no-sync", "-E", "UTF8"]), check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
    subprocess.run(_as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                                 "-o", options, "start"]), check=True, capture_output=True)
    return PostgresServer(root, port, user)


def stop_postgres(server: PostgresServer) -> None:
    subprocess.run(_as_postgres([str(_bin_dir() / "pg_ctl"), "-D", str(server.root / "data"), "-m", "immediate",
                                 "stop"]), capture_output=True)
    shutil.rmtree(server.root, ignore_errors=True)


async def fresh_database(server: PostgresServer) -> str:
    """A new empty database on the shared server; its URL."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server.url())
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    finally:
        await conn.close()
    return server.url(name)
