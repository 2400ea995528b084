"""The `photoq` command: serve, and operator commands that work beside a running server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .config import ConfigError, Settings, load_settings


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string: a login link carries the token there), status, size, time."""

    def log(self, request, response, time):
        self.logger.info('%s "%s %s" %s %s %.3fs', request.remote, request.method, request.path,
                         response.status, response.body_length, time)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="photoq", description="Self-hosted photo upload and processing.")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--config", type=Path, help="path to config.toml (default: $PHOTOQ_CONFIG or ./config.toml)")
        sub.add_argument("--data-dir", help="where photos and the database live (default ./data)")
        return sub

    serve = with_config(commands.add_parser("serve", help="run the web server and the workers"))
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (default 8080)")
    serve.add_argument("--workers", help="image workers (default: number of CPUs)")
    with_config(commands.add_parser("status", help="print queue counts from the database"))
    with_config(commands.add_parser("retry-failed", help="queue every failed job again"))
    with_config(commands.add_parser("login-url", help="print the login link (it contains the admin token)"))
    doctor = with_config(commands.add_parser("doctor", help="check the database against the files on disk"))
    doctor.add_argument("--repair", action="store_true",
                        help="remove orphan files, re-queue missing outputs, fail photos whose original is gone")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    overrides = {"server.data_dir": args.data_dir}
    for flag, dotted in (("host", "server.host"), ("port", "server.port"), ("workers", "processing.workers")):
        overrides[dotted] = getattr(args, flag, None)
    return load_settings(args.config, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"photoq: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.server.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        return serve(settings)
    if args.command == "doctor":
        return asyncio.run(doctor_command(settings, repair=args.repair))
    return asyncio.run(OPERATOR_COMMANDS[args.command](settings))


def base_url(settings: Settings) -> str:
    host = settings.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host and host != "::" else host
    if host == "::":
        shown = "[::1]"
    return f"http://{shown}:{settings.server.port}"


def serve(settings: Settings) -> int:
    from .app import CREDENTIALS, create_app

    app = create_app(settings)
    log = logging.getLogger("photoq")

    async def announce(app: web.Application) -> None:
        credentials = app[CREDENTIALS]
        url = base_url(settings)
        log.info("photoq %s listening on %s with %d worker(s); data in %s", _version(), url,
                 settings.processing.workers, settings.data_dir)
        if credentials.generated:
            # The one time the token is printed: it was just generated and saved.
            print(f"\n  photoq is ready. Log in: {url}/login?token={credentials.token}\n", flush=True)
        else:
            token_source = "from your configuration" if settings.auth.token else f"in {settings.data_dir / 'token'}"
            print(f"\n  photoq is ready: {url}/login  (admin token {token_source}; "
                  f"`photoq login-url` prints a login link)\n", flush=True)

    app.on_startup.append(announce)
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        access_log_class=AccessLogger,
        shutdown_timeout=settings.processing.shutdown_grace_seconds + 5,
        print=None,
    )
    return 0


def _version() -> str:
    from . import __version__
    return __version__


async def _with_database(settings: Settings, action):
    from .db import Database
    from .storage import Storage

    storage = Storage(settings.data_dir)
    if not storage.database_path.exists():
        print(f"photoq: no database in {settings.data_dir} (has photoq been started there?)", file=sys.stderr)
        return 1
    db = Database(storage.database_path)
    await db.open()
    try:
        return await action(db)
    finally:
        await db.close()


async def doctor_command(settings: Settings, repair: bool) -> int:
    from .doctor import Doctor
    from .storage import Storage

    async def action(db) -> int:
        try:
            return await Doctor(settings, db, Storage(settings.data_dir), repair).run()
        finally:
            sys.stdout.flush()

    return await _with_database(settings, action)


async def status_command(settings: Settings) -> int:
    async def action(db) -> int:
        stats = await db.stats()
        jobs = await db.job_counts()
        paused = await db.get_setting("queue.paused") == "1"
        print("photos:", "  ".join(f"{k} {v}" for k, v in stats.as_dict().items()))
        print("jobs:  ", "  ".join(f"{k} {v}" for k, v in jobs.items()), " (paused)" if paused else "")
        return 0

    return await _with_database(settings, action)


async def retry_failed_command(settings: Settings) -> int:
    """Through the running server when there is one (its workers start at once and live views update),
    else straight in the database (picked up at the next start)."""
    answer = await _ask_running_server(settings, "POST", "/api/admin/queue/retry-failed")
    if answer is not None:
        print(f"requeued {answer['requeued']} failed job(s) in the running server")
        return 0

    async def action(db) -> int:
        count, _ = await db.retry_all_failed(time.time(), settings.queue.max_attempts)
        print(f"requeued {count} failed job(s); they run when photoq next starts")
        return 0

    return await _with_database(settings, action)


async def _ask_running_server(settings: Settings, method: str, path: str) -> dict | None:
    """The JSON answer of our own running server, or None when none answers with our token."""
    import aiohttp

    from .auth_token import read_token
    from .storage import Storage

    token = settings.auth.token or read_token(Storage(settings.data_dir).token_path)
    if not token:
        return None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.request(method, base_url(settings) + path,
                                       headers={"Authorization": f"Bearer {token}"}) as response:
                if response.status != 200:
                    return None  # another service on that port, or another photoq with another token
                return await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def login_url_command(settings: Settings) -> int:
    from .auth_token import load_credentials
    from .storage import Storage

    credentials = load_credentials(settings.auth.token, Storage(settings.data_dir).token_path)
    print(f"{base_url(settings)}/login?token={credentials.token}")
    return 0


OPERATOR_COMMANDS = {
    "status": status_command,
    "retry-failed": retry_failed_command,
    "login-url": login_url_command,
}
