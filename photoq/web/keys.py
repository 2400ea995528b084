"""Typed application keys: how handlers reach photoq's services."""

from __future__ import annotations

import weakref

from aiohttp import web

from ..admission import Slots
from ..auth_token import Credentials
from ..cluster import ClusterNode
from ..config import Settings
from ..db import Database
from ..events import Broadcaster
from ..ingest import Ingest
from ..login_throttle import LoginThrottle
from ..metrics import Metrics
from ..queue import JobQueue
from ..resumable import ResumableUploads
from ..sessions import Session, SessionStore
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
CLUSTER = web.AppKey("cluster", ClusterNode)
SSE_RESPONSES = web.AppKey("sse_responses", weakref.WeakSet)
UPLOAD_SLOTS = web.AppKey("upload_slots", Slots)
EVENT_STREAM_SLOTS = web.AppKey("event_stream_slots", Slots)
SESSIONS = web.AppKey("sessions", SessionStore)
LOGIN_THROTTLE = web.AppKey("login_throttle", LoginThrottle)

# How the current request was authenticated: "bearer" or "session" (unset on public routes).
AUTH_KIND = web.RequestKey("auth_kind", str)
# The web session of a cookie-authenticated request.
SESSION = web.RequestKey("session", Session)
