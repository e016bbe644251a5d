"""The agent panel shows each call's conversation figures after it (issue 25); unmeasured ones as –."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.metrics.test_panel import CHROMIUM, TOKEN, FakeDaemon


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    with FakeDaemon() as fake:
        yield fake


def test_panel_shows_the_last_calls_figures(daemon: FakeDaemon) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.goto(f"http://127.0.0.1:{daemon.port}/panel/#token={TOKEN}")
            expect(page.locator("#connection")).to_have_text("connected")
            expect(page.locator("#last-call")).to_be_hidden()  # no call measured yet
            figures = {
                "agent_share": 0.42, "overtalk_count": 2, "overtalk_s": 1.4, "dead_air_count": 1, "dead_air_s": 4.0,
                "response_median_s": None, "agent_longest_monologue_s": 12.25, "missed_checkins": 0,
            }  # fmt: skip
            daemon.push({"type": "event", "event": "analytics", "call": "a84b@pbx", "figures": figures})
            expect(page.locator("#last-call")).to_be_visible()
            expect(page.locator("#lc-share")).to_have_text("42 %")
            expect(page.locator("#lc-overtalk")).to_have_text("2 × (1.4 s)")
            expect(page.locator("#lc-dead-air")).to_have_text("1 × (4.0 s)")
            expect(page.locator("#lc-response")).to_have_text("\u2013")  # null: not measured, never 0
            expect(page.locator("#lc-monologue")).to_have_text("12.3 s")
            expect(page.locator("#lc-checkins")).to_have_text("0")
            daemon.push({"type": "event", "event": "analytics", "call": "x", "figures": "<b>bad</b>"})
            expect(page.locator("#lc-share")).to_have_text("42 %")  # a bad message changes nothing
        finally:
            browser.close()
