"""The baseline for ingest: a bare aiohttp handler that streams the request body to a file and answers.

    python bench/bare_upload.py PORT DIRECTORY
"""

from __future__ import annotations

import os
import sys
import uuid

from aiohttp import web

CHUNK_BYTES = 256 * 1024


async def upload(request: web.Request) -> web.Response:
    path = os.path.join(request.app["dir"], f"{uuid.uuid4().hex}.part")
    size = 0
    with open(path, "wb") as out:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            out.write(chunk)
            size += len(chunk)
    return web.json_response({"size": size}, status=202)


def main() -> None:
    port, directory = int(sys.argv[1]), sys.argv[2]
    app = web.Application(client_max_size=1 << 30)
    app["dir"] = directory
    app.router.add_post("/upload", upload)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
