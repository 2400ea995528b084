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
from .web.proxy import client_address


class AccessLogger(AbstractAccessLogger):
    """Method, path (never the query string: a login link carries the token there), status, size, time."""

    def log(self, request, response, time):
        self.logger.info('%s "%s %s" %s %s %.3fs', client_address(request), request.method, request.path,
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
    with_config(commands.add_parser(
        "login-url", help="print a one-time login link (valid for [auth] login_code_minutes, 15 by default)"))
    doctor = with_config(commands.add_parser("doctor", help="check the database against the files on disk"))
    doctor.add_argument("--repair", action="store_true",
                        help="remove orphan files, re-queue missing outputs, fail photos whose original is gone")
    add_import_parser(commands, with_config)
    reprocess = with_config(commands.add_parser(
        "reprocess", help="queue the outputs that are missing or stale after the output settings changed",
        description="Queue only the outputs that are missing (added to the configuration, or their file is gone) or "
                    "stale (rendered with another size, format, quality, WebP method or AVIF speed than configured "
                    "now), through the running server if there is one (restart it after changing the settings). "
                    "Outputs recorded before photoq remembered their settings "
                    "count as stale only when their size or format differs; --all renders everything selected "
                    "again. Failed photos are left for retry-failed; outputs removed from the configuration are "
                    "left alone."))
    reprocess.add_argument("--variant", action="append", metavar="NAME",
                           help="only this output (repeat for several; default: every output)")
    reprocess.add_argument("--album", type=int, metavar="ID", help="only the photos of this album")
    reprocess.add_argument("--all", action="store_true", dest="everything",
                           help="render the selected outputs again even where they look fresh")
    reprocess.add_argument("--dry-run", action="store_true", help="print what would be queued, queue nothing")
    return parser


IMPORT_DESCRIPTION = """\
Import every image under DIR into an album.

Through the running photoq server when one answers at the configured address with the admin token (its workers
process the photos at once and live views update), else straight into the data directory (the photos are processed
when `photoq serve` next starts).

Folders are walked recursively in sorted order. Hidden files and folders (names starting with a dot), symlinks
(never followed) and special files are skipped, and so are files that are not images by their first bytes.
Files whose bytes are already in the album are skipped as duplicates. An interrupted import (Ctrl-C, kill, power
cut) continues where it stopped when run again with the same arguments: a journal in DATA_DIR/imports/ records
each file imported (path, size, mtime), and files unchanged since are not sent again.

Exit status: 0 when every image is in the album, 1 when some files were rejected or unreadable or the import
stopped (a full disk, a server that went away), 2 when it could not start (no such folder, an ambiguous album name).
"""


def add_import_parser(commands, with_config) -> None:
    sub = with_config(commands.add_parser(
        "import", help="import a folder of photos into an album", description=IMPORT_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter))
    sub.add_argument("folder", metavar="DIR", type=Path, help="the folder to import")
    album = sub.add_mutually_exclusive_group(required=True)
    album.add_argument("--album", metavar="NAME",
                       help="the album, by name: created when no album has it; an error when several have it")
    album.add_argument("--album-id", metavar="ID", type=int, help="the album, by id (it must exist)")
    sub.add_argument("--no-recursive", dest="recursive", action="store_false", help="only the files directly in DIR")
    sub.add_argument("--recheck", action="store_true",
                     help="ignore the journal and offer every file again (duplicates are still skipped by content)")
    sub.add_argument("--batch-files", metavar="N", type=int, default=16,
                     help="files per upload request and per journal write (default 16)")
    sub.add_argument("--quiet", "-q", action="store_true", help="print only problems: no progress, no summary")
    sub.add_argument("--verbose", "-v", action="store_true", help="also list each skipped and duplicate file")
    sub.add_argument("--host", help="address of the running server (default from the configuration)")
    sub.add_argument("--port", help="port of the running server (default from the configuration)")


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
    if args.command == "import":
        try:
            return asyncio.run(import_command(settings, args))
        except KeyboardInterrupt:
            print("\nphotoq import: interrupted; run the same command again to continue", file=sys.stderr)
            return 130
    if args.command == "reprocess":
        return asyncio.run(reprocess_command(settings, args.variant, args.album, args.everything, args.dry_run))
    return asyncio.run(OPERATOR_COMMANDS[args.command](settings))


def base_url(settings: Settings) -> str:
    host = settings.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host and host != "::" else host
    if host == "::":
        shown = "[::1]"
    return f"http://{shown}:{settings.server.port}"


def serve(settings: Settings) -> int:
    from .datadir_lock import DataDirBusy, DataDirLock, uses_embedded_database

    if not uses_embedded_database(settings):
        return _serve(settings)
    try:
        with DataDirLock(settings.data_dir):
            return _serve(settings)
    except DataDirBusy as exc:
        print(f"photoq: {exc}", file=sys.stderr)
        return 1


def _serve(settings: Settings) -> int:
    from .app import CREDENTIALS, SESSIONS, create_app

    app = create_app(settings)
    log = logging.getLogger("photoq")

    async def announce(app: web.Application) -> None:
        credentials = app[CREDENTIALS]
        url = base_url(settings)
        log.info("photoq %s listening on %s with %d worker(s); data in %s", _version(), url,
                 settings.processing.workers, settings.data_dir)
        if credentials.generated or sys.stdout.isatty():
            # On the first start (the token was just generated) and for someone at a terminal (`make run`): a
            # one-time link. It never carries the token itself, which would stay in the browser's history.
            code = await app[SESSIONS].mint_login_code()
            print(f"\n  photoq is ready. Log in: {url}/login?code={code}\n"
                  f"  (a one-time link, valid for {settings.auth.login_code_minutes:g} minutes; "
                  f"`photoq login-url` prints another)\n", flush=True)
        else:
            token_source = "from your configuration" if settings.auth.token else f"in {settings.data_dir / 'token'}"
            print(f"\n  photoq is ready: {url}/login  (admin token {token_source}; "
                  f"`photoq login-url` prints a login link)\n", flush=True)

    app.on_startup.append(announce)
    from .web.server import run

    run(app, settings, AccessLogger)
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
    db = Database(storage.database_path, id_floors=storage.highest_ids_on_disk)
    await db.open()
    try:
        return await action(db)
    finally:
        await db.close()


async def doctor_command(settings: Settings, repair: bool) -> int:
    from .ops.doctor import Doctor
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
        # No eta_seconds here: only the running server measures throughput.
        print("photos:", "  ".join(f"{k} {v}" for k, v in stats.as_dict().items() if k != "eta_seconds"))
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
    answer = await _server_request(settings, method, path)
    if answer is None or answer[0] != 200:
        return None  # another service on that port, or another photoq with another token
    return answer[1]


async def _server_request(settings: Settings, method: str, path: str, body: dict | None = None,
                          timeout: float = 10) -> tuple[int, dict] | None:
    """(status, JSON body) of whatever answers on our port with JSON, or None when nothing does."""
    import aiohttp

    token = _admin_token(settings)
    if not token:
        return None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.request(method, base_url(settings) + path, json=body,
                                       headers={"Authorization": f"Bearer {token}"}) as response:
                answer = await response.json(content_type=None)
                return (response.status, answer) if isinstance(answer, dict) else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


def _admin_token(settings: Settings) -> str | None:
    from .auth_token import read_token
    from .storage import Storage

    return settings.auth.token or read_token(Storage(settings.data_dir).token_path)


async def reprocess_command(settings: Settings, variants: list[str] | None, album_id: int | None,
                            everything: bool, dry_run: bool) -> int:
    """Through the running server when there is one (its workers start at once and live views update; it renders
    with the settings it was started with, so it refuses when they differ from ours), else in the database."""
    from .ops.reprocess import Reprocessor, UnknownVariant, check_variants, describe, settings_fingerprints
    from .storage import Storage

    try:
        check_variants(settings, variants)
    except UnknownVariant as exc:
        print(f"photoq: {exc}", file=sys.stderr)
        return 2
    request = {"variants": variants, "album_id": album_id, "all": everything, "dry_run": dry_run,
               "expect": settings_fingerprints(settings)}
    answer = await _server_request(settings, "POST", "/api/admin/reprocess", request, timeout=600)
    if answer is not None:
        status, body = answer
        if status == 200 and "queued" in body:
            print(describe(body, " in the running server"))
            return 0
        if body.get("error") in ("settings_differ", "unknown_album", "unknown_variant"):
            print(f"photoq: {body.get('message')}", file=sys.stderr)
            return 1 if body["error"] == "settings_differ" else 2

    async def action(db) -> int:
        if album_id is not None and await db.get_album(album_id) is None:
            print(f"photoq: there is no album with id {album_id}", file=sys.stderr)
            return 2
        queue_outputs = _queue_outputs_in_database(db, settings.queue.max_attempts)
        result = await Reprocessor(settings, db, Storage(settings.data_dir), queue_outputs).run(
            variants, album_id, everything=everything, dry_run=dry_run)
        where = "" if dry_run or not result.queued else "; they run when photoq next starts"
        print(describe(result.as_dict(), where))
        return 0

    return await _with_database(settings, action)


def _queue_outputs_in_database(db, max_attempts: int):
    async def queue_outputs(parts, dry_run: bool):
        outcomes, _ = await db.queue_outputs(parts, time.time(), max_attempts, dry_run)
        return outcomes

    return queue_outputs


async def import_command(settings: Settings, args: argparse.Namespace) -> int:
    """Through the running server when there is one (found as retry-failed finds it), else into the data directory."""
    from .models import clean_album_name
    from .ops.import_targets import StopImport, UsageError
    from .ops.importer import ImportOptions, run_import

    try:
        name = clean_album_name(args.album) if args.album is not None else None
    except ValueError as exc:
        print(f"photoq import: {exc}", file=sys.stderr)
        return 2
    if args.batch_files < 1:
        print("photoq import: --batch-files must be at least 1", file=sys.stderr)
        return 2
    options = ImportOptions(folder=args.folder, album_name=name, album_id=args.album_id, recursive=args.recursive,
                            recheck=args.recheck, quiet=args.quiet, verbose=args.verbose, batch_files=args.batch_files)
    server = None
    token = _admin_token(settings)  # without it, no server of ours would answer (_ask_running_server says None)
    if token and await _ask_running_server(settings, "GET", "/api/albums") is not None:
        server = (base_url(settings), token)
    try:
        return await run_import(settings, options, server)
    except UsageError as exc:
        print(f"photoq import: {exc}", file=sys.stderr)
        return 2
    except StopImport as exc:  # before any file was sent, e.g. the server went away while the album was chosen
        print(f"photoq import: error: {exc}", file=sys.stderr)
        return 1


async def login_url_command(settings: Settings) -> int:
    from .auth_token import load_credentials
    from .db import Database
    from .sessions import mint_login_code
    from .storage import Storage

    storage = Storage(settings.data_dir)
    load_credentials(settings.auth.token, storage.token_path)  # the token the server will use, made if none yet
    db = Database(storage.database_path)
    await db.open()  # the running server's database: it accepts the code at once
    try:
        code = await mint_login_code(db, settings.auth)
    finally:
        await db.close()
    print(f"{base_url(settings)}/login?code={code}")
    return 0


OPERATOR_COMMANDS = {
    "status": status_command,
    "retry-failed": retry_failed_command,
    "login-url": login_url_command,
}
