"""The suite's throwaway PostgreSQL: it starts as the postgres user, and each test gets a database of its own."""

from __future__ import annotations

import asyncpg


async def test_each_test_gets_an_empty_database_of_its_own(postgres_url, postgres_server):
    conn = await asyncpg.connect(postgres_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
        await conn.execute("CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY, v text)")
        await conn.execute("INSERT INTO t (v) VALUES ('x')")
        assert await conn.fetchval("SELECT current_user") == postgres_server.user
        assert (await conn.fetchval("SHOW server_version_num")) >= "130000"  # gen_random_uuid, SKIP LOCKED
    finally:
        await conn.close()


async def test_the_postgresql_schema_claims_in_priority_order_by_its_index_skipping_locked_rows(postgres_url):
    from photoq.db.postgres_schema import CLAIM_JOBS, SCHEMA

    conn = await asyncpg.connect(postgres_url)
    other = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(SCHEMA)
        await conn.execute("INSERT INTO albums (name, created_at) VALUES ('A', 1)")
        await conn.execute(
            "INSERT INTO photos (album_id, filename, sha256, size_bytes, width, height, format, content_type, "
            "created_at) SELECT 1, 'p', md5(i::text), 1, 4, 3, 'jpeg', 'image/jpeg', 1 FROM generate_series(1, 2000) i")
        await conn.execute(
            "INSERT INTO jobs (photo_id, kind, priority, max_attempts, run_at, created_at, updated_at) "
            "SELECT id, k.kind, k.priority, 3, 1, 1, 1 FROM photos, "
            "(VALUES ('variant', 10), ('thumbnail', 0)) AS k(kind, priority) ORDER BY photos.id, k.priority DESC")
        await conn.execute("ANALYZE jobs")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + CLAIM_JOBS.replace("$1", "5").replace(
            "$2", "2").replace("$3", "65")))
        assert "Index Scan using jobs_runnable" in plan and "LockRows" in plan, plan

        async with other.transaction():  # another node's claim in flight holds its rows...
            held = await other.fetch(CLAIM_JOBS, 5.0, 2, 65.0)
            mine = await conn.fetch(CLAIM_JOBS, 5.0, 2, 65.0)  # ...and this one takes the next, without waiting
        assert {r["kind"] for r in held + mine} == {"thumbnail"}  # thumbnails before any variant
        assert not {r["id"] for r in held} & {r["id"] for r in mine}
        assert len({r["lease_token"] for r in held + mine}) == 4
        assert [r["id"] for r in mine] == sorted(r["id"] for r in mine)
    finally:
        await other.close()
        await conn.close()
