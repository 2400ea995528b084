"""Accessibility (issue: defect 8): axe-core, from npm (tests/ui/axe, installed by `make test`; injected by these
tests only, never served by photoq), finds no serious or critical violation on any page, light and dark, laptop and
phone; live regions announce at most every few seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.hostile import jpeg_header_then_garbage
from tests.support import jpeg

from .conftest import LAPTOP, PHONE, api, screenshot, until, upload

AXE = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
MODES = [("laptop", LAPTOP, "light"), ("laptop", LAPTOP, "dark"), ("phone", PHONE, "light"), ("phone", PHONE, "dark")]


def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}); `make test` installs it (npm install in tests/ui/axe).")
    return AXE.read_text(encoding="utf-8")


async def serious_violations(page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one line each."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(axe_source())  # through the debugging protocol: the page's CSP stays as it is
    result = await page.evaluate("""async () => {
        const r = await axe.run(document, { resultTypes: ['violations'] });
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v =>
            v.id + ' (' + v.impact + '): ' + v.help + ' -> ' +
            v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' [' + (n.failureSummary || '').replace(/\\s+/g, ' ')
            + ']').join(' | '));
    }""")
    return result


async def test_no_serious_or_critical_violation_on_any_page(browser, start_ui):
    ui = await start_ui()
    album = await api(ui, "POST", "/api/albums", json={"name": "Iceland 2023"})
    ids = await upload(ui, album["id"], ("falls.jpg", jpeg(seed=1)), ("glacier.jpg", jpeg(seed=2)),
                       ("broken.jpg", jpeg_header_then_garbage(seed=3)))
    await until(lambda: _settled(ui, album["id"], 3), 90, "processing")
    empty = await api(ui, "POST", "/api/albums", json={"name": "Empty"})
    # An album whose photos wait in the queue: placeholders, the progress bar and the "paused" notice.
    waiting = await api(ui, "POST", "/api/albums", json={"name": "Waiting"})
    await api(ui, "POST", "/api/admin/queue/pause")
    await upload(ui, waiting["id"], ("a.jpg", jpeg(seed=4)), ("b.jpg", jpeg(seed=5)))
    pages = {
        "albums": "/",
        "album": f"/albums/{album['id']}",
        "album-empty": f"/albums/{empty['id']}",
        "album-queued": f"/albums/{waiting['id']}",
        "photo": f"/photos/{ids[0]}",
        "photo-failed": f"/photos/{ids[2]}",
        "queue": "/queue",
        "not-found": "/photos/999999",
    }
    problems: dict[str, list[str]] = {}
    for device, viewport, scheme in MODES:
        login = await ui.new_page(browser, viewport=viewport, color_scheme=scheme, logged_in=False)
        await login.goto(ui.url("/login"))
        if found := await serious_violations(login):
            problems[f"login {device} {scheme}"] = found
        await login.context.close()
        page = await ui.new_page(browser, viewport=viewport, color_scheme=scheme)
        for name, path in pages.items():
            await page.goto(ui.url(path))
            await expect(page.locator("main")).to_be_visible()
            if name == "album":  # with a menu open too
                await page.get_by_label("More actions for Iceland 2023").click()
            if found := await serious_violations(page):
                problems[f"{name} {device} {scheme}"] = found
            await screenshot(page, f"defect8-{name}-{device}-{scheme}")
        await page.context.close()
    assert not problems, "\n".join(f"{where}:\n  " + "\n  ".join(found) for where, found in problems.items())


async def _settled(ui, album_id: int, count: int) -> bool:
    stats = await api(ui, "GET", f"/api/stats?album_id={album_id}")
    return stats["complete"] + stats["failed"] == count


# Records every text change of a live region (role=status/alert, aria-live) with its time, from the first paint on.
LIVE_RECORDER = """
window.__liveChanges = [];
new MutationObserver((mutations) => {
  for (const m of mutations) {
    const node = m.target.nodeType === 1 ? m.target : m.target.parentElement;
    const region = node && node.closest('[role=status], [role=alert], [aria-live]');
    if (region && region.textContent.trim()) {
      window.__liveChanges.push({ id: region.id || region.className, at: performance.now(), text: region.textContent });
    }
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


async def test_live_regions_announce_at_most_every_few_seconds(browser, start_ui, tmp_path):
    from .conftest import write_files

    ui = await start_ui(processing={"workers": 1})
    album = await api(ui, "POST", "/api/albums", json={"name": "Quiet"})
    page = await ui.new_page(browser)
    await page.add_init_script(LIVE_RECORDER)
    await page.goto(ui.url(f"/albums/{album['id']}"))
    files = {f"{i:02}.jpg": jpeg(1600, 1200, seed=40 + i) for i in range(12)}
    await page.locator("#file-input").set_input_files(write_files(tmp_path / "up", files))
    await expect(page.locator("#processing-text")).to_have_text("All 12 photos are processed.", timeout=120_000)
    await page.wait_for_timeout(300)
    changes = await page.evaluate("window.__liveChanges")
    by_region: dict[str, list[dict]] = {}
    for change in changes:
        by_region.setdefault(change["id"], []).append(change)
    assert "processing-live" in by_region and "upload-live" in by_region, by_region.keys()
    for region, seen in by_region.items():
        # Consecutive announcements of a region are seconds apart; only the final outcome may come sooner.
        gaps = [(b["at"] - a["at"]) / 1000 for a, b in zip(seen, seen[1:-1])]
        assert all(gap >= 4.5 for gap in gaps), (region, gaps, [c["text"] for c in seen])
    assert by_region["processing-live"][-1]["text"] == "All 12 photos are processed."
