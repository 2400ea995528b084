"""The time estimate in the browser: "… left" beside "Processing n of m" and on the queue page, live, gone when done."""

from __future__ import annotations

import contextlib
import os
import re
import signal

from playwright.async_api import expect

from photoq.web.keys import WORKERS
from tests.support import jpeg, wait_for_photos

from .conftest import api, create_album, screenshot, until, upload

LEFT = re.compile(r"^(less than a minute|about \d+ min|about \d+ h \d+ min) left$")


@contextlib.asynccontextmanager
async def frozen_image_process(ui):
    """The app's one image process stopped (SIGSTOP) for the block: the job it has, or gets next, cannot finish."""
    pool = ui.app[WORKERS]
    await until(lambda: len(pool.child_pids()) == 1)
    [pid] = pool.child_pids()
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_the_album_and_queue_pages_say_how_long_is_left(browser, start_ui):
    ui = await start_ui(processing={"workers": 1})
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Estimates")
    await expect(page.locator("#processing-eta")).to_be_hidden()
    # Two photos measure both kinds of job; until then there is no estimate to show.
    await wait_for_photos(ui.api, await upload(ui, album_id, *[(f"w{i}.jpg", jpeg(seed=70 + i)) for i in range(2)]))

    async with frozen_image_process(ui):  # the next job cannot finish: the estimate stays on screen
        ids = await upload(ui, album_id, *[(f"p{i}.jpg", jpeg(seed=80 + i)) for i in range(3)])
        await expect(page.locator("#processing-text")).to_have_text(re.compile(r"^Processing \d of [35]$"))
        await expect(page.locator("#processing-eta")).to_have_text(LEFT)
        await expect(page.locator("#processing-eta")).to_be_visible()
        stats = await api(ui, "GET", f"/api/stats?album_id={album_id}")
        assert isinstance(stats["eta_seconds"], int) and stats["eta_seconds"] > 0

        queue_page = await page.context.new_page()
        await queue_page.goto(ui.url("/queue"))
        await expect(queue_page.locator("#queue-eta")).to_have_text(LEFT)
        await screenshot(page, "30-album-eta")
    await wait_for_photos(ui.api, ids)
    await expect(page.locator("#processing-text")).to_have_text(re.compile(r"^All [35] photos are processed\.$"))
    await expect(page.locator("#processing-eta")).to_be_hidden()
    await expect(queue_page.locator("#queue-eta")).to_have_count(0)
