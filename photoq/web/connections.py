"""Connections as a resource: timeouts and a cap, so that slow or silent clients cannot take photoq offline.

aiohttp alone closes a connection only after its keep-alive time (3 630 s by default), counted from the end of the
last response, whatever the client sends meanwhile; it has no limit on connections. 1 100 clients that send half a
request line and wait are enough to run a 1 024-file process out of descriptors: accept() fails, /healthz stops
answering. Here every connection of `photoq serve` is a GuardedRequestHandler registered with one ConnectionGuard:

- headers: a request whose headers are not complete `header_timeout` seconds after its first byte is closed;
- body: a request whose body is unfinished and delivers less than `body_min_rate` bytes a second over a window of
  `body_timeout` seconds while photoq is ready to read more (the socket is not paused because photoq's own buffer
  is full) is closed: no progress, or a trickle such as 1 byte a second, both count as stalled. An upload cut off
  this way is a truncated upload, cleaned up like any other;
- idle keep-alive: aiohttp's own `keepalive_timeout`, set short enough for a LAN service;
- a cap on open connections, kept below the process's open-file limit: at the cap a new connection takes the place
  of the one that has waited longest without a request in progress (half-sent headers or idle keep-alive), so a
  flood of silent connections cannot lock out a real client such as a health check. When every connection is busy
  with a request, the newcomer gets a 503 with Retry-After and is closed.

Connections are accepted by GuardedSite's own accept loop, which asks the guard before building anything; accept()
errors (EMFILE, ENFILE) that still happen are logged once per burst by AcceptErrorThrottle, not once per attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import logging
import resource
import socket
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("photoq.web")

RETRY_AFTER_SECONDS = 5
# Descriptors kept free for everything that is not a client connection: the database and its WAL, the image
# processes' pipes, files being uploaded and served, the listening sockets, logs.
RESERVED_DESCRIPTORS = 128
# The kernel's queue of connections not yet accepted: long, so that no client's SYN is dropped in a burst (a dropped
# SYN costs the client a second). Connections are accepted ACCEPT_BATCH per wake-up; the sockets the guard closes
# are freed an event-loop turn later, so the open-file limit keeps room for a few batches above the cap.
LISTEN_BACKLOG = 4096
ACCEPT_BATCH = 64
ACCEPT_BATCHES_IN_FLIGHT = 4
ACCEPT_RETRY_SECONDS = 0.1


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    header_timeout: float
    body_timeout: float
    body_min_rate: float = 0.0
    check_interval: float = 0.5


def usable_connection_limit(configured: int,
                            reserved: int = RESERVED_DESCRIPTORS + ACCEPT_BATCH * ACCEPT_BATCHES_IN_FLIGHT) -> int:
    """`configured`, lowered to fit the open-file limit (raised first to its hard maximum when allowed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return configured
    fitting = max(16, soft - reserved)
    if configured > fitting:
        log.warning("server.max_connections = %d does not fit the open-file limit of %d (LimitNOFILE); using %d",
                    configured, soft, fitting)
        return fitting
    return configured


def overloaded_response(message: str) -> bytes:
    """A complete HTTP/1.1 503 in the contract's JSON, for a connection refused before its request was read."""
    body = json.dumps({"error": "overloaded", "message": message}).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % (RETRY_AFTER_SECONDS, len(body))
            + body)


class GuardedRequestHandler(RequestHandler):
    """aiohttp's protocol for one connection, reporting to the guard what it receives and when."""

    def __init__(self, manager: Any, *, guard: ConnectionGuard, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.evicted = False
        self.guarded_transport: asyncio.Transport | None = None
        self.current_request: web.BaseRequest | None = None
        now = time.monotonic()
        self.waiting_since: float | None = None  # first byte of a request whose headers have not all arrived
        self.idle_since = now  # no request in progress since then
        self.window_start = now  # the body's current progress window and what arrived in it
        self.window_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.guarded_transport = transport  # type: ignore[assignment]
        super().connection_made(transport)
        if self.evicted:  # replaced between accept() and now
            self.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.release(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.current_request is None:
            if self.waiting_since is None and data:
                self.waiting_since = time.monotonic()
        else:
            self.window_bytes += len(data)
        super().data_received(data)

    # -- called by the guard middleware ------------------------------------------------------------------------

    def request_started(self, request: web.BaseRequest) -> None:
        self.current_request = request
        self.waiting_since = None
        self.window_start = time.monotonic()
        self.window_bytes = 0

    def request_finished(self) -> None:
        self.current_request = None
        self.idle_since = time.monotonic()

    # -- asked by the guard ------------------------------------------------------------------------------------

    def replaceable_since(self) -> float | None:
        """When this connection last had a request in progress (None while one is): the eviction order."""
        if self.current_request is not None:
            return None
        return self.idle_since if self.waiting_since is None else min(self.idle_since, self.waiting_since)

    def stalled(self, now: float, limits: ConnectionLimits) -> str | None:
        """Why this connection should be closed now, or None."""
        if self.current_request is None:
            if self.waiting_since is not None and now - self.waiting_since > limits.header_timeout:
                return "headers not complete in time"
            return None
        transport = self.guarded_transport
        if self.current_request.content.is_eof() or transport is None or not transport.is_reading():
            # Nothing more to receive, or photoq is the slow one (its buffer is full): start a fresh window.
            self.window_start, self.window_bytes = now, 0
            return None
        if now - self.window_start < limits.body_timeout:
            return None
        if self.window_bytes <= limits.body_min_rate * limits.body_timeout:
            return "request body stalled"
        self.window_start, self.window_bytes = now, 0
        return None

    def abort(self) -> None:
        self.evicted = True
        transport = self.guarded_transport
        if transport is not None:
            transport.abort()


class ConnectionGuard:
    def __init__(self, limits: ConnectionLimits):
        self.limits = limits
        self.connections: set[GuardedRequestHandler] = set()
        self.closed_stalled = 0
        self.replaced = 0
        self.refused = 0
        self._task: asyncio.Task | None = None

    def make_room(self) -> bool:
        """Room for one more connection: at the cap, the one waiting longest without a request is closed.
        False when every connection has a request in progress."""
        if len(self.connections) < self.limits.max_connections:
            return True
        victim = self._longest_waiting()
        if victim is None:
            self.refused += 1
            return False
        self.replaced += 1
        self.connections.discard(victim)
        victim.abort()
        return True

    def admit(self, handler: GuardedRequestHandler) -> None:
        self.connections.add(handler)

    def release(self, handler: GuardedRequestHandler) -> None:
        self.connections.discard(handler)

    def _longest_waiting(self) -> GuardedRequestHandler | None:
        best, best_since = None, None
        for handler in self.connections:
            since = handler.replaceable_since()
            if since is not None and (best_since is None or since < best_since):
                best, best_since = handler, since
        return best

    def sweep(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        stalled = [h for h in self.connections if h.stalled(now, self.limits)]
        for handler in stalled:
            self.connections.discard(handler)
            handler.abort()
        self.closed_stalled += len(stalled)
        return len(stalled)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.limits.check_interval)
            try:
                self.sweep()
            except Exception:  # never let the watchdog die
                log.exception("connection watchdog failed")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


@web.middleware
async def guard_middleware(request: web.Request, handler):
    """Tells the connection when a request is in progress (outermost, so that it spans the whole handling)."""
    protocol = request.protocol
    if not isinstance(protocol, GuardedRequestHandler):
        return await handler(request)
    protocol.request_started(request)
    try:
        return await handler(request)
    finally:
        protocol.request_finished()


class GuardedSite(web.BaseSite):
    """A TCP site with its own accept loop, so that the guard decides before a connection costs anything.

    asyncio's own server accepts up to its backlog in one go and only then builds the connections; under a flood
    that overshoots the open-file limit, and a full accept() stops accepting for a whole second. Here the kernel
    keeps a long queue (no client's SYN is dropped), connections are taken ACCEPT_BATCH at a time, and one the guard
    has no room for is answered with a 503 and closed at once, before it becomes an aiohttp connection."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard,
                 handler_args: dict[str, Any], backlog: int = LISTEN_BACKLOG):
        super().__init__(runner, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        self._handler_args = handler_args
        self._sockets: list[socket.socket] = []
        self._errors = AcceptErrorThrottle()
        self._resume: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(self._host or None, self._port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(self._backlog)
                sock.setblocking(False)
            except OSError:
                sock.close()
                self._close_sockets()
                raise
            self._sockets.append(sock)
        self._listen(loop)

    def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        self._resume = None
        for sock in self._sockets:
            loop.add_reader(sock.fileno(), self._accept, loop, sock)

    def _accept(self, loop: asyncio.AbstractEventLoop, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    raise
                # Out of descriptors: stop listening for a moment (the kernel keeps the queue) instead of spinning.
                self._errors.failed(exc)
                for sock in self._sockets:
                    loop.remove_reader(sock.fileno())
                self._resume = loop.call_later(ACCEPT_RETRY_SECONDS, self._listen, loop)
                return
            self._errors.succeeded()
            conn.setblocking(False)
            if not self._guard.make_room():
                with contextlib.suppress(OSError):
                    conn.send(overloaded_response("Too many connections; try again shortly."))
                conn.close()
                continue
            server = self._runner.server
            assert server is not None
            handler = GuardedRequestHandler(server, loop=loop, guard=self._guard, **self._handler_args)
            self._guard.admit(handler)
            task = loop.create_task(loop.connect_accepted_socket(functools.partial(_same, handler), conn))
            task.add_done_callback(functools.partial(self._connected, handler, conn))

    def _connected(self, handler: GuardedRequestHandler, conn: socket.socket, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:
            self._guard.release(handler)
            conn.close()

    def _close_sockets(self) -> None:
        loop = asyncio.get_running_loop()
        if self._resume is not None:
            self._resume.cancel()
        for sock in self._sockets:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()

    async def stop(self) -> None:
        self._close_sockets()
        await super().stop()


def _same(handler: GuardedRequestHandler) -> GuardedRequestHandler:
    return handler


class AcceptErrorThrottle:
    """accept() failures (out of descriptors) logged once per burst, not once per attempt: the first failure of a
    burst is logged, the rest are counted and summed up when accepting works again, and every `quiet_seconds` while
    the burst lasts. Used by GuardedSite's accept loop, and installable as an event loop's exception handler for
    asyncio's own servers, which report each failed accept() there with a traceback."""

    MESSAGE = "socket.accept() out of system resource"

    def __init__(self, quiet_seconds: float = 10.0, clock=time.monotonic):
        self._quiet = quiet_seconds
        self._clock = clock
        self._in_burst = False
        self._last_report = 0.0
        self._unreported = 0
        self._previous: Any = None

    def failed(self, exc: BaseException | None) -> None:
        now = self._clock()
        if not self._in_burst:
            self._in_burst = True
            self._last_report = now
            log.error("cannot accept connections: %s; new clients wait until descriptors are free "
                      "(raise LimitNOFILE or lower server.max_connections)", exc)
            return
        self._unreported += 1
        if now - self._last_report >= self._quiet:
            self._report(now, "")

    def succeeded(self) -> None:
        if self._in_burst:
            self._in_burst = False
            self._report(self._clock(), "; accepting connections again")

    def _report(self, now: float, suffix: str) -> None:
        log.error("accept() failed %d more time(s) in the last %.0f s%s", self._unreported, now - self._last_report,
                  suffix)
        self._unreported = 0
        self._last_report = now

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(self._handle)

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if context.get("message") == self.MESSAGE:
            self.failed(context.get("exception"))
        elif self._previous is not None:
            self._previous(loop, context)
        else:
            loop.default_exception_handler(context)
