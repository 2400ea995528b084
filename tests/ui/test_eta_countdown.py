"""The "… left" estimate counts down between the server's stats events, in the browser's (Playwright-driven) clock:
never below "less than a minute left" while work remains, replaced by each new server value, still once the live
connection is lost."""

from __future__ import annotations

import asyncio
import contextlib
import re

from playwright.async_api import expect

from photoq.eta import ThroughputMeter
from photoq.web.keys import EVENTS, QUEUE
from tests.support import jpeg, wait_for_photos

from .conftest import api, create_album, screenshot, until, upload
from .test_eta_pages import LEFT, frozen_image_process

JOB_SECONDS = 60


def meter_that_measured(seconds_per_job: float) -> ThroughputMeter:
    """photoq's throughput meter, on a clock of its own that stands still unless moved: it has measured three jobs of
    each kind at `seconds_per_job` one after another, and the jobs run from now on take no time on it."""
    now = [1000.0]
    meter = ThroughputMeter(lambda: now[0])
    for job_id, kind in enumerate(["thumbnail", "variant"] * 3, start=1):
        meter.started(job_id, kind)
        now[0] += seconds_per_job
        meter.finished(job_id, completed=True)
    return meter


def minutes_left(text: str) -> int:
    """0 for "less than a minute left"."""
    assert LEFT.match(text), text
    if text.startswith("less than"):
        return 0
    hours = re.search(r"(\d+) h", text)
    return (int(hours.group(1)) * 60 if hours else 0) + int(re.search(r"(\d+) min", text).group(1))


@contextlib.asynccontextmanager
async def dropped_live_connection(ui, page):
    """End the page's SSE stream and hold its reconnection until the block is done."""
    held, reconnecting = [], asyncio.Event()

    async def hold(route):
        held.append(route)
        reconnecting.set()

    await page.route("**/api/events*", hold)
    broadcaster = ui.app[EVENTS]
    await broadcaster.stop()  # what shutdown does: every live stream ends
    await broadcaster.start()
    await asyncio.wait_for(reconnecting.wait(), 30)  # the page noticed, and is trying again
    try:
        yield
    finally:
        for route in held:
            await route.continue_()
        await page.unroute("**/api/events*")


async def settled(ui, eta_seconds: int) -> None:
    """Wait until the frozen image process has its job: from then on no stats event comes unless the test makes one
    (one arriving while the page's clock is moved would rightly start the count afresh)."""
    async def still() -> bool:
        stats = await api(ui, "GET", "/api/stats")
        return stats["processing"] == 1 and stats["eta_seconds"] == eta_seconds

    await until(still)


async def pause_page_clock(page) -> None:
    await page.clock.pause_at(await page.evaluate("() => Date.now()") / 1000 + 1)


@contextlib.asynccontextmanager
async def photos_waiting_on_a_frozen_worker(ui, album_id: int, seed: int):
    """Three photos (six jobs of a minute, as far as the estimate knows) held by a frozen image process, so that no
    job finishes and no new estimate arrives unless the test makes one; yields their ids (add to the list to wait
    for more at the end)."""
    await wait_for_photos(ui.api, await upload(ui, album_id, *[(f"w{i}.jpg", jpeg(seed=seed + i)) for i in range(2)]))
    ui.app[QUEUE].throughput = meter_that_measured(JOB_SECONDS)
    async with frozen_image_process(ui):
        ids = await upload(ui, album_id, *[(f"p{i}.jpg", jpeg(seed=seed + 10 + i)) for i in range(3)])
        await settled(ui, 360)
        yield ids


async def test_the_estimate_counts_down_between_events_and_stops_at_less_than_a_minute(browser, start_ui):
    ui = await start_ui(processing={"workers": 1})
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Countdown")
    async with photos_waiting_on_a_frozen_worker(ui, album_id, seed=90) as ids:
        await page.clock.install()
        await page.goto(ui.url(f"/albums/{album_id}"))
        eta = page.locator("#processing-eta")
        await expect(eta).to_have_text("about 6 min left")
        await pause_page_clock(page)

        await page.clock.run_for("02:00")
        await expect(eta).to_have_text("about 4 min left")
        shown = [minutes_left(await eta.text_content())]
        for _ in range(20):  # ten more minutes, half a minute at a time
            await page.clock.run_for("00:30")
            await expect(eta).to_be_visible()
            shown.append(minutes_left(await eta.text_content()))
        assert shown == sorted(shown, reverse=True), shown
        assert shown[-1] == 0 and shown.count(0) > 10, shown
        await expect(eta).to_have_text("less than a minute left")
        await screenshot(page, "41-album-eta-floor")

        # A new server value replaces the local count at once.
        ids += await upload(ui, album_id, ("p3.jpg", jpeg(seed=103)))
        await expect(eta).to_have_text("about 8 min left")
        await page.clock.run_for("01:00")
        await expect(eta).to_have_text("about 7 min left")

        # Connection lost (the server ends every live stream, and the browser's reconnection is held back): the
        # last figure stays, and no longer counts down.
        async with dropped_live_connection(ui, page):
            await page.clock.run_for("03:00")
            await expect(eta).to_have_text("about 7 min left")
        # Back: the server's figure, counting down again.
        await expect(eta).to_have_text("about 8 min left")
        await page.clock.run_for("01:00")
        await expect(eta).to_have_text("about 7 min left")
    await page.clock.resume()
    await wait_for_photos(ui.api, ids)
    await expect(eta).to_be_hidden()


async def test_the_queue_page_counts_down_too_through_a_refresh_of_the_page_and_stops_offline(browser, start_ui):
    ui = await start_ui(processing={"workers": 1})
    page = await ui.new_page(browser)
    album_id = await create_album(page, ui, "Queue countdown")
    async with photos_waiting_on_a_frozen_worker(ui, album_id, seed=110) as ids:
        await page.clock.install()
        await page.goto(ui.url("/queue"))
        eta = page.locator("#queue-eta")
        await expect(eta).to_have_text("about 6 min left")
        await pause_page_clock(page)
        await page.clock.run_for("03:00")
        await expect(eta).to_have_text("about 3 min left")

        # A new photo: a new server value at once, then a fresh copy of the page (a second later) whose text is
        # that value as the server said it; the count carries on over it.
        ids += await upload(ui, album_id, ("p3.jpg", jpeg(seed=123)))
        await expect(eta).to_have_text("about 8 min left")
        await page.clock.run_for("02:00")
        await expect(page.locator("#stat-queued")).to_have_text("3")  # the refreshed region: 4 photos, 1 running
        await expect(eta).to_have_text("about 6 min left")
        await screenshot(page, "42-queue-eta-countdown")

        async with dropped_live_connection(ui, page):
            await page.clock.run_for("02:00")
            await expect(eta).to_have_text("about 6 min left")
        await expect(eta).to_have_text("about 8 min left")
        await page.clock.run_for("10:00")
        await expect(eta).to_have_text("less than a minute left")
    await page.clock.resume()
    await wait_for_photos(ui.api, ids)
    await expect(eta).to_have_count(0)
