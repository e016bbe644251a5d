"""Central's IT page of rollouts in real headless Chromium (Debian's `chromium`, Playwright) against a
real floor: Mosquitto, PostgreSQL and central with HTTPS in this loop, and four desks' real floor
clients reporting their units and their update phases over the broker as a daemon's relay does.

The page is opened once, before the rollout exists; everything after arrives pushed (no reload,
checked by a marker left in the page): the rollout appears, the canary's phase moves through
queued, receiving n % and confirmed, the wave starts, a rollback there halts the rollout with its
reason, a pinned team shows skipped; revoking the token sends the page back to its login."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from offhook import bundle as B
from offhook.floor import auth
from offhook.floor import rollouts as R
from tests.fleet import keyring
from tests.floor.rig import CentralTask, Mosquitto, SinkDesk, query, run, until
from tests.floor.test_wallboard_browser import CHROMIUM, require_chromium
from tests.floor.webrig import client_ssl, get, make_token, web_for

NAMES = ["desk-01", "desk-02", "desk-03", "desk-04"]  # desk-04 is team red, pinned


def unit(fw: str = "1.1.0") -> dict[str, str]:
    return {"serial": "s", "board": "pico", "firmware": fw, "slot": "a", "health": "confirmed", "transport": "serial"}


def test_the_it_page_shows_each_rollout_and_each_units_phase_live(db: str, mqtt: Mosquitto, tmp_path: Path) -> None:
    require_chromium(CHROMIUM)
    from playwright.async_api import async_playwright, expect

    data = keyring.signed(version="1.2.0")

    async def scenario() -> None:
        task = CentralTask(mqtt, db)
        web = web_for(task.central, mqtt, db, rollouts_every_s=0.2, recheck_s=0.5)
        async with task:
            await asyncio.wait_for(web.ready.wait(), 10)
            it_token = make_token(db, auth.IT, "it desk")
            lead = {"Authorization": f"Bearer {make_token(db, auth.SUPERVISOR, 'floor lead')}"}
            base = f"https://localhost:{web.port}"
            desks = [SinkDesk(mqtt, name, tmp_path) for name in NAMES]
            desks[3].client.feed.team = "red"
            updates: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
            for desk in desks:
                desk.client.on_update = updates[desk.name].append
                desk.client.event({"event": "unit", "connected": True}, unit())
                desk.start()
            try:
                await until(lambda: len(query(db, "SELECT 1 FROM desks d JOIN inventory USING (site, desk)")) == 4, 10)
                with psycopg.connect(db, autocommit=True) as conn:
                    R.pin(conn, "red", "1.1.0")

                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(mqtt))) as http:
                    for path in ("/rollouts", "/api/rollouts", "/ws/rollouts"):
                        assert (await get(http, base + path, headers=lead))[0] == 403, path
                    assert (await get(http, base + "/rollouts"))[0] == 302  # to the login

                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
                    try:
                        page = await (await browser.new_context(ignore_https_errors=True)).new_page()
                        errors: list[str] = []
                        page.on("pageerror", lambda error: errors.append(str(error)))
                        await page.goto(base + "/login?next=/rollouts")
                        await page.fill("#token", it_token)
                        await page.click("button[type=submit]")
                        await page.wait_for_url(re.compile(r"/rollouts$"))
                        await expect(page.locator("#live")).to_have_text("Live", timeout=5000)
                        await expect(page.locator("#none")).to_be_visible()
                        await page.evaluate("window.stayed = true")  # gone if the page reloads

                        with psycopg.connect(db, autocommit=True) as conn:
                            spec = R.Spec(
                                "r1", "1.2.0", "pico", B.sha256_hex(data), canary=1, wave_percent=100, soak_s=0
                            )
                            R.create(conn, spec, data)
                        r1 = page.locator('section[data-rollout="r1"]')
                        await expect(r1.locator(".status")).to_have_text("running", timeout=5000)
                        await expect(page.locator("#none")).to_be_hidden()

                        def row(name: str) -> Any:
                            return r1.locator(f'tr[data-desk="hq/{name}"]')

                        await expect(row("desk-01").locator(".phase")).to_have_text("sent", timeout=5000)
                        await expect(row("desk-01").locator(".stage")).to_have_text("1")
                        await expect(row("desk-02")).to_have_count(0)  # not in the canary
                        await expect(r1.locator('.skipped li[data-desk="hq/desk-04"]')).to_have_text(
                            "hq/desk-04 skipped: team red is pinned to 1.1.0"
                        )
                        await until(lambda: [u["rollout"] for u in updates["desk-01"]] == ["r1"], 5)

                        def report(name: str, phase: str, percent: int = 0, reason: str = "") -> None:
                            desk = desks[NAMES.index(name)]
                            body = {"rollout": "r1", "phase": phase, "percent": percent, "reason": reason, "tz": ""}
                            desk.client.update_status(body)

                        report("desk-01", "queued")
                        await expect(row("desk-01").locator(".phase")).to_have_text("queued", timeout=5000)
                        report("desk-01", "receiving", 40)
                        await expect(row("desk-01").locator(".phase")).to_have_text("receiving 40 %", timeout=5000)
                        await expect(row("desk-01").locator('[role="progressbar"]')).to_have_attribute(
                            "aria-valuenow", "40"
                        )
                        report("desk-01", "confirmed", 100)
                        await expect(row("desk-01").locator(".phase")).to_have_text("confirmed", timeout=5000)
                        # The canary ended, no soak: the wave goes to the rest (not the pinned desk).
                        await expect(row("desk-02").locator(".stage")).to_have_text("2", timeout=5000)
                        await expect(row("desk-03").locator(".phase")).to_have_text("sent")
                        await expect(row("desk-04")).to_have_count(0)
                        report("desk-02", "confirmed", 100)
                        report("desk-03", "rolled back", 0, "main crashed at boot; slot a again")
                        await expect(r1.locator(".status")).to_have_text("halted", timeout=5000)
                        await expect(r1.locator(".reason")).to_have_text("stage 2: 1 of 2 failed or rolled back")
                        await expect(row("desk-03")).to_have_class("unhealthy")
                        await expect(row("desk-03").locator(".why")).to_have_text("main crashed at boot; slot a again")
                        await expect(r1.locator(".counts")).to_have_text("2/3 done, 1 failed, stage 2")
                        assert await page.evaluate("window.stayed") is True
                        assert errors == []

                        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(mqtt))) as http:
                            it = {"Authorization": f"Bearer {it_token}"}
                            status, body = await get(http, base + "/api/rollouts", headers=it)
                            assert status == 200 and [r["status"] for r in body["rollouts"]] == ["halted"]
                            assert body["rollouts"][0]["units"]["hq/desk-03"]["phase"] == "rolled back"

                        with psycopg.connect(db, autocommit=True) as conn:
                            conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE role = 'it'")
                        await page.wait_for_url(re.compile(r"/login\?next=/rollouts$"), timeout=5000)
                    finally:
                        await browser.close()
            finally:
                for desk in desks:
                    await desk.stop()

    run(scenario(), 90)
