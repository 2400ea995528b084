from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from photoq.app import create_app
from photoq.config import Settings, load_settings

from .support import AUTH, TEST_TOKEN


def make_settings(data_dir: Path, **sections) -> Settings:
    """Settings for a test: embedded defaults, a temp data dir, a known token, quick retries; override per section,
    e.g. make_settings(tmp_path, queue={"max_attempts": 2})."""
    base = load_settings(environ={}, overrides={"server.data_dir": str(data_dir)})
    chosen = {
        "auth": {"token": TEST_TOKEN},
        "processing": {"workers": 2, "shutdown_grace_seconds": 10},
        "queue": {"backoff_base_seconds": 0.2, "backoff_max_seconds": 1.0},
        "storage": {"min_free_bytes": 0},
    }
    for section, values in sections.items():
        if section == "outputs":
            continue
        chosen.setdefault(section, {}).update(values)
    replaced = {
        name: dataclasses.replace(getattr(base, name), **values) for name, values in chosen.items()
    }
    if "outputs" in sections:
        replaced["outputs"] = sections["outputs"]
    return dataclasses.replace(base, **replaced)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def client(aiohttp_client, settings):
    """A real photoq app on a real SQLite file with real image processes, behind a real aiohttp test server."""
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def start_client(aiohttp_client, tmp_path):
    """Start an app with custom settings: `await start_client(queue={"max_attempts": 2})`."""

    async def start(**sections):
        return await aiohttp_client(create_app(make_settings(tmp_path / "data", **sections)))

    return start


@pytest.fixture
async def album(client) -> int:
    async with client.post("/api/albums", json={"name": "Test"}, headers=AUTH) as response:
        assert response.status == 201
        return (await response.json())["id"]


@pytest.fixture(scope="session")
def postgres_server():
    """One throwaway PostgreSQL for the whole session (see tests/postgres.py); fails loudly when it cannot start."""
    from .postgres import start_postgres, stop_postgres

    server = start_postgres()
    yield server
    stop_postgres(server)


@pytest.fixture
async def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the shared server."""
    from .postgres import fresh_database

    return await fresh_database(postgres_server)
