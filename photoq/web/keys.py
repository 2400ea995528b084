"""Typed application keys: how handlers reach photoq's services."""

from __future__ import annotations

import weakref

from aiohttp import web

from ..auth_token import Credentials
from ..config import Settings
from ..db import Database
from ..events import Broadcaster
from ..ingest import Ingest
from ..metrics import Metrics
from ..queue import JobQueue
from ..resumable import ResumableUploads
from ..shares import ShareInbox
from ..storage import Storage
from ..trash import Trash
from ..workers import WorkerPool

CONFIG = web.AppKey("config", Settings)
STORAGE = web.AppKey("storage", Storage)
CREDENTIALS = web.AppKey("credentials", Credentials)
DB = web.AppKey("db", Database)
EVENTS = web.AppKey("events", Broadcaster)
QUEUE = web.AppKey("queue", JobQueue)
INGEST = web.AppKey("ingest", Ingest)
RESUMABLE = web.AppKey("resumable", ResumableUploads)
SHARES = web.AppKey("shares", ShareInbox)
TRASH = web.AppKey("trash", Trash)
WORKERS = web.AppKey("workers", WorkerPool)
METRICS = web.AppKey("metrics", Metrics)
SSE_RESPONSES = web.AppKey("sse_responses", weakref.WeakSet)

# How the current request was authenticated: "bearer" or "session" (unset on public routes).
AUTH_KIND = web.RequestKey("auth_kind", str)
