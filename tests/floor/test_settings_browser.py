"""The IT settings page in real headless Chromium (Debian's `chromium`, driven by Playwright) against a
real central (HTTPS), Mosquitto and PostgreSQL, and a real daemon on a simulated unit: IT sets a team
value on the page and sees it become effective at the desk, with its source layer. Without chromium
the test fails (it does not skip)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING

from offhook.floor import auth
from tests.floor.rig import CentralTask, Mosquitto, query, run, until
from tests.floor.test_settings_floor import RealDesk, reported
from tests.floor.test_wallboard_browser import CHROMIUM, require_chromium
from tests.floor.webrig import make_token, web_for

if TYPE_CHECKING:
    from playwright.async_api import Locator


def test_a_team_value_set_on_the_it_page_shows_as_effective_with_its_source(
    db: str, mqtt: Mosquitto, tmp_path: Path
) -> None:
    require_chromium(CHROMIUM)
    from playwright.async_api import async_playwright, expect

    async def scenario() -> None:
        task = CentralTask(mqtt, db)
        web = web_for(task.central, mqtt, db)
        desk = RealDesk(mqtt, "desk-01", "complaints", tmp_path, {"timers": {"hold_reminder_s": 100}})
        async with task:
            await asyncio.wait_for(web.ready.wait(), 10)
            it = make_token(db, auth.IT, "it desk")
            try:
                await desk.start()
                await until(lambda: reported(db, "desk-01").get("effective") is not None, 15)
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                    page = await (await browser.new_context(ignore_https_errors=True)).new_page()
                    await page.goto(f"https://localhost:{web.port}/settings")
                    await page.wait_for_url(re.compile(r"/login\?next=/settings$"))
                    await page.fill("#token", it)
                    await page.click("button[type=submit]")
                    await page.wait_for_url(re.compile(r"/settings$"))

                    def row(key: str) -> Locator:
                        """The cells of one key's row in the desk's effective settings."""
                        cells = page.locator("#effective tbody tr").filter(
                            has=page.locator("td:first-child", has_text=re.compile(f"^{key}$"))
                        )
                        return cells.locator("td")

                    await page.fill("#desk", "desk-01")
                    await page.click("#show button[type=submit]")
                    await expect(row("wrap_up_s")).to_have_text(["wrap_up_s", "30", "default", ""])
                    await expect(row("hold_reminder_s")).to_have_text(["hold_reminder_s", "100", "local", ""])
                    await expect(row("brightness")).to_have_text(["brightness", "80", "default", ""])

                    # A team value, set on the page: central stores it, the desk applies it and
                    # reports it, and the page (which reads the desk again) shows it with its source.
                    await page.select_option("#layer", "team")
                    await page.fill("#target", "complaints")
                    await page.fill("#pair", "wrap_up_s=60")
                    await page.click("#set")
                    await expect(page.locator("#answer")).to_have_text(re.compile(r"^Version 1: saved"))
                    assert query(db, "SELECT layer, target, key, value FROM settings") == [
                        ("team", "complaints", "wrap_up_s", 60)
                    ]
                    await expect(row("wrap_up_s")).to_have_text(["wrap_up_s", "60", "team", ""], timeout=20000)
                    await expect(page.locator("#summary")).to_contain_text("version 1 in effect, central at 1")
                    await expect(page.locator("#layers tbody tr td")).to_have_text(
                        ["team", "complaints", "wrap_up_s", "60", ""]
                    )

                    # A bad value is refused on the page with the key named, and nothing is stored.
                    await page.fill("#pair", "wrap_up_s=long")
                    await page.click("#set")
                    await expect(page.locator("#answer")).to_contain_text("timers.wrap_up_s must be a number")
                    assert query(db, "SELECT version FROM settings_version") == [(1,)]
                    await browser.close()
            finally:
                await desk.stop()

    run(scenario(), 120)
