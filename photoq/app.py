"""Build the web.Application: services wired through typed keys, started and stopped by cleanup contexts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from pathlib import Path

from aiohttp import web

from .admission import Slots
from .auth_token import load_credentials
from .cluster import ClusterNode
from .config import Settings
from .datadir_lock import uses_embedded_database
from .db import Database
from .events import Broadcaster
from .ingest import Ingest
from .login_throttle import LoginThrottle
from .metrics import Metrics
from .queue import JobQueue
from .resumable import ResumableUploads
from .sessions import SessionStore
from .shares import ShareInbox
from .storage import Storage
from .trash import Trash
from .web import api, downloads, manage, metrics, pwa, session, sse, tus, ui
from .web.admission import upload_slots_middleware
from .web.connections import guard_middleware
from .web.keys import (
    CLUSTER,
    CONFIG,
    CREDENTIALS,
    DB,
    EVENT_STREAM_SLOTS,
    EVENTS,
    INGEST,
    LOGIN_THROTTLE,
    METRICS,
    QUEUE,
    RESUMABLE,
    SESSIONS,
    SHARES,
    SSE_RESPONSES,
    STORAGE,
    TRASH,
    UPLOAD_SLOTS,
    WORKERS,
)
from .web.middleware import auth_middleware, errors_middleware, ratelimit_middleware, security_headers_middleware
from .web.proxy import proxy_headers_middleware
from .web.templating import TEMPLATES, make_environment
from .workers import WorkerPool

log = logging.getLogger("photoq")

STATIC_DIR = Path(__file__).resolve().parent / "static"
JSON_BODY_LIMIT = 1024 * 1024  # uploads are streamed and not bound by this
SESSION_PRUNE_SECONDS = 3600
STALE_STAGED_SECONDS = 3600.0  # an upload commits moments after its original is staged; an hour means its node died


def create_app(settings: Settings) -> web.Application:
    trusted = settings.server.trusted_proxies
    app = web.Application(
        middlewares=[guard_middleware, *([proxy_headers_middleware(trusted)] if trusted else []),
                     security_headers_middleware, errors_middleware, ratelimit_middleware(settings.ratelimit),
                     auth_middleware, upload_slots_middleware],
        client_max_size=JSON_BODY_LIMIT,
    )
    app[CONFIG] = settings
    app[STORAGE] = Storage(settings.data_dir, fsync=settings.storage.fsync)
    app[TEMPLATES] = make_environment()
    app[SSE_RESPONSES] = weakref.WeakSet()
    app[UPLOAD_SLOTS] = Slots(settings.server.max_uploads, "uploads")
    app[EVENT_STREAM_SLOTS] = Slots(settings.server.max_event_streams, "live-progress streams")
    app[LOGIN_THROTTLE] = LoginThrottle(settings.auth.login_free_failures, settings.auth.login_max_lockout_seconds)
    app[METRICS] = Metrics()  # per app, not prometheus_client's global registry
    role = settings.server.role
    # A worker node renders and answers only /healthz and /metrics; a web node serves and renders nothing.
    contexts = [storage_ctx, database_ctx, sessions_ctx, events_ctx, queue_ctx]
    if role != "worker":
        contexts.extend([trash_ctx, resumable_ctx])
    # The node joins before its workers start and leaves after they stopped, so the jobs they hand back at shutdown
    # reach the other nodes' live pages too.
    contexts.append(cluster_ctx)
    if role != "web":
        contexts.append(workers_ctx)
    app.cleanup_ctx.extend(contexts)
    app.on_shutdown.append(close_live_streams)
    if role == "worker":
        app.router.add_get("/healthz", api.healthz)
    else:
        app.add_routes(api.routes)
        app.add_routes(tus.routes)
        app.add_routes(downloads.routes)
        app.add_routes(pwa.routes)
        app.add_routes(manage.routes)
        app.add_routes(sse.routes)
        app.add_routes(session.routes)
        app.add_routes(ui.routes)
        app.router.add_static("/static/", STATIC_DIR, name="static", append_version=True)
    app.add_routes(metrics.routes)
    return app


async def storage_ctx(app: web.Application):
    storage = app[STORAGE]
    storage.prepare()
    if app[CONFIG].server.role != "worker":  # a worker node receives no uploads: no temp file there is its own
        removed = storage.sweep_temp(everything=uses_embedded_database(app[CONFIG]))
        if removed:
            log.info("removed %d unfinished upload(s) left by the last run", removed)
    app[CREDENTIALS] = load_credentials(app[CONFIG].auth.token, storage.token_path)
    yield


async def database_ctx(app: web.Application):
    db = Database(app[STORAGE].database_path, id_floors=app[STORAGE].highest_ids_on_disk)
    await db.open()
    app[DB] = db
    if db.single_node:
        await db.unstage(None, app[STORAGE].remove_relpaths)  # originals of uploads killed before their commit
    else:  # another node's upload may be between its stage and its commit: only long-dead ones are forgotten
        await db.unstage_older_than(time.time() - STALE_STAGED_SECONDS, app[STORAGE].remove_relpaths)
    yield
    await db.close()


async def sessions_ctx(app: web.Application):
    """Web sessions and login codes live in the database; expired ones are deleted at start and then hourly."""
    sessions = SessionStore(app[DB], app[CONFIG].auth, app[CREDENTIALS].token)
    app[SESSIONS] = sessions
    await sessions.prune()

    async def prune_hourly() -> None:
        while True:
            await asyncio.sleep(SESSION_PRUNE_SECONDS)
            try:
                await sessions.prune()
            except Exception:
                log.exception("could not delete expired sessions")

    pruner = asyncio.create_task(prune_hourly())
    yield
    pruner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await pruner


async def events_ctx(app: web.Application):
    db = app[DB]

    async def compute_stats(album_id):
        queue = app.get(QUEUE)  # set once the queue has started; its stats carry eta_seconds
        return (await (queue.stats(album_id) if queue is not None else db.stats(album_id))).as_dict()

    broadcaster = Broadcaster(compute_stats)
    app[EVENTS] = broadcaster
    await broadcaster.start()
    yield
    await broadcaster.stop()


async def queue_ctx(app: web.Application):
    queue = JobQueue(app[DB], app[EVENTS], app[CONFIG].queue, metrics=app[METRICS])
    await queue.start()
    app[QUEUE] = queue
    if app[CONFIG].server.role != "worker":
        app[INGEST] = Ingest(queue, app[STORAGE], app[CONFIG])
        shares = ShareInbox(app[STORAGE].root / "shares", app[INGEST])
        await asyncio.to_thread(shares.prepare)
        await shares.sweep()
        app[SHARES] = shares
    yield


async def trash_ctx(app: web.Application):
    """Deleted albums and photos wait in the trash; what is older than its retention is purged now and hourly."""
    trash = Trash(app[DB], app[STORAGE], app[EVENTS], app[CONFIG].queue.max_attempts)
    app[TRASH] = trash
    sweeper = asyncio.create_task(trash.sweep_periodically())
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper


async def resumable_ctx(app: web.Application):
    """Resumable (tus) uploads outlive restarts; expired ones are removed at start and then periodically."""
    settings = app[CONFIG]
    uploads = ResumableUploads(app[STORAGE].root / "resumable", fsync=settings.storage.fsync,
                               expire_seconds=settings.upload.resumable_expire_hours * 3600)
    await asyncio.to_thread(uploads.prepare)
    app[RESUMABLE] = uploads
    removed = await uploads.sweep_expired()
    if removed:
        log.info("removed %d expired resumable upload(s)", removed)
    sweeper = asyncio.create_task(uploads.sweep_periodically())
    yield
    sweeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sweeper


async def workers_ctx(app: web.Application):
    settings = app[CONFIG]
    pool = WorkerPool(app[QUEUE], app[STORAGE], settings)
    app[WORKERS] = pool
    await pool.start()
    yield
    await pool.stop(grace=settings.processing.shutdown_grace_seconds)


async def cluster_ctx(app: web.Application):
    """The nodes registry, the periodic sweep of expired leases and, with a shared database, the event bridge."""
    settings = app[CONFIG]

    def busy() -> int:
        pool = app.get(WORKERS)
        return pool.busy if pool is not None else 0

    node = ClusterNode(app[DB], app[QUEUE], app[EVENTS], settings, busy=busy,
                       workers=0 if settings.server.role == "web" else settings.processing.workers)
    await node.start()
    app[CLUSTER] = node
    yield
    await node.stop()


async def close_live_streams(app: web.Application) -> None:
    """SSE responses never end by themselves: end them, or shutdown waits its whole timeout."""
    if EVENTS in app:
        await app[EVENTS].stop()
