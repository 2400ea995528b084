"""Jinja2 templates from the top-level templates/ folder, rendered into aiohttp responses."""

from __future__ import annotations

from pathlib import Path

import jinja2
from aiohttp import web

from . import urls
from .keys import SESSION

TEMPLATES = web.AppKey("templates", jinja2.Environment)


def templates_dir() -> Path:
    packaged = Path(__file__).resolve().parent.parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "templates"


def make_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["urls"] = urls  # templates build album and photo URLs as the API and scripts do
    return environment


def render(request: web.Request, name: str, context: dict | None = None, status: int = 200) -> web.Response:
    context = dict(context or {})
    session = request.get(SESSION)
    context.setdefault("csrf_token", session.csrf_token if session is not None else "")
    context.setdefault("request_path", request.path)
    html = request.app[TEMPLATES].get_template(name).render(context)
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={"Cache-Control": "no-store"})
