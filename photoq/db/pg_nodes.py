"""The PostgreSQL backend's nodes registry and event bridge (cluster mode): the Store verbs of the nodes table.

A mixin for the PostgreSQL store: it needs `self.pool` (an asyncpg pool) and `self.dsn` (for the bridge's
connection of its own). Times cross the boundary as float unix seconds, as every Store verb's do, and are stored as
timestamptz; capacity is jsonb.
"""

from __future__ import annotations

import asyncpg

from ..models import Node
from .pg_events import PostgresEventBridge

# The nodes table, as the PostgreSQL migration that adds it creates it.
NODES_TABLE = """
CREATE TABLE nodes (
    id          text        PRIMARY KEY,
    host        text        NOT NULL,
    port        integer     NOT NULL,
    role        text        NOT NULL CHECK (role IN ('all', 'web', 'worker')),
    workers     integer     NOT NULL,
    busy        integer     NOT NULL,
    capacity    jsonb,
    started_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
)
"""

NODE_COLUMNS = ("id, host, port, role, workers, busy, capacity::text, extract(epoch FROM started_at)::float8, "
                "extract(epoch FROM last_seen)::float8")


class PostgresNodes:
    pool: asyncpg.Pool
    dsn: str

    def event_bridge(self) -> PostgresEventBridge:
        return PostgresEventBridge(self.dsn)

    async def heartbeat_node(self, node: Node) -> None:
        await self.pool.execute(
            """INSERT INTO nodes (id, host, port, role, workers, busy, capacity, started_at, last_seen)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, to_timestamp($8), to_timestamp($9))
               ON CONFLICT (id) DO UPDATE SET busy = excluded.busy, capacity = excluded.capacity,
                   workers = excluded.workers, last_seen = excluded.last_seen""",
            node.id, node.host, node.port, node.role, node.workers, node.busy, node.capacity, node.started_at,
            node.last_seen)

    async def list_nodes(self) -> list[Node]:
        rows = await self.pool.fetch(f"SELECT {NODE_COLUMNS} FROM nodes ORDER BY started_at, id")
        return [Node(*tuple(row)) for row in rows]

    async def forget_node(self, node_id: str) -> None:
        await self.pool.execute("DELETE FROM nodes WHERE id = $1", node_id)

    async def forget_silent_nodes(self, silent_since: float) -> int:
        status = await self.pool.execute("DELETE FROM nodes WHERE last_seen < to_timestamp($1)", silent_since)
        return int(status.split()[-1])
