"""The agent panel in headless Chromium (Debian's `chromium`, driven by Playwright).

A tiny fake daemon serves the real panel files at /panel/ and the documented API
messages on ws://127.0.0.1:PORT/api (docs/panel.md): it checks the one-time token,
answers `subscribe` with a ringing call, then the test pushes talking, on hold and
wrap-up states and today's figures, and reads what the page shows. With
OFFHOOK_PANEL_SCREENSHOT=docs/img/panel.png the on-hold screenshot is kept there.

The daemon going away and coming back: the fake daemon and the daemon's real API server
(both give the page a resume token with its welcome, docs/panel.md) are stopped while the
page shows a call and started again on the same port. With
OFFHOOK_PANEL_LOST_SCREENSHOT=docs/img/panel-lost-daemon.png the "lost the daemon"
screenshot is kept there.

These tests need Debian's chromium: without it they fail (they do not skip).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mimetypes
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

PANEL_DIR = REPO_ROOT / "host" / "offhook" / "panel"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "one-time-token-for-the-test"
# What the page says when it is not connected (panel.js).
LOST = "Lost the offhook daemon \u2014 reconnecting\u2026"
REFUSED = "The offhook daemon refused this page's token \u2014 run `offhook panel` again"
NO_TOKEN = "Not connected to the offhook daemon \u2014 open this page with `offhook panel`"
BACK_WITHIN_S = 2.0  # issue 18: the panel is true again within 2 s of the daemon's return


def require_chromium(path: str | Path) -> None:
    """Fail (never skip) when the browser is missing: a skip would hide a missing part."""
    if not Path(path).is_file():
        pytest.fail(
            f"Debian's chromium is missing ({path} not found): the agent panel tests need it; "
            "`make .make/apt-metrics` (part of `make test`) installs it",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _chromium() -> None:
    require_chromium(CHROMIUM)


def test_a_missing_chromium_fails_the_test_instead_of_skipping(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="chromium is missing"):
        require_chromium(tmp_path / "chromium")


def call(state: str, **extra: Any) -> dict[str, Any]:
    base = {"id": "a84b@pbx", "peer": "sip:+49301234567@pbx", "direction": "inbound", "state": state}
    return {"talk_s": None, "held_s": None, "next_hold_reminder_s": None, **base, **extra}


def state(call_state: str, agent: str, calls: list[dict[str, Any]], wrap: float | None = None) -> dict[str, Any]:
    return {
        "call": call_state,
        "agent": agent,
        "muted": False,
        "mute_confirmed": True,
        "wrap_up_remaining_s": wrap,
        "consulting": False,
        "softphone_connected": True,
        "calls": calls,
    }


RINGING = state("ringing", "available", [call("ringing")])
TALKING = state("active", "on_call", [call("active", talk_s=62.0)])
# On hold for 151 s: the first reminder (at 2 min) went off, the next one is due in 89 s.
HELD = state("held", "on_call", [call("held", talk_s=215.0, held_s=151.0, next_hold_reminder_s=89.0)])
WRAP_UP = state("idle", "wrap_up", [], wrap=27.0)
FIGURES = {
    "date": "2026-03-10",
    "calls": 14,
    "handled": 12,
    "missed": 1,
    "abandoned": 1,
    "aht_s": 302.75,
    "talk_mean_s": 180.25,
    "hold_mean_s": 92.5,
    "wrap_mean_s": 30.0,
    "long_holds": 2,
}


class FakeDaemon:
    """Serves /panel/* and /api like the daemon, in a thread with its own event loop.

    TOKEN works once, like the daemon's one-time token. With ``resume`` the welcome also
    carries a resume token that keeps working across stop() and start(), as the daemon's
    does (docs/panel.md), so that the page can come back by itself.
    """

    def __init__(self, port: int = 0, resume: bool = False, api_up: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = port
        self.resume = resume
        self.api_up = api_up  # False: /panel/ is served, /api refuses (503) as if nobody were there
        self.snapshot: dict[str, Any] = RINGING  # what `subscribe` answers
        self.received: list[dict[str, Any]] = []
        self.clients: set[Any] = set()
        self._valid = {TOKEN}
        self._resumes = 0
        self._server: Any = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeDaemon:
        self._thread.start()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> None:
        """Listen (again) on ``port``: 0 picks a free one the first time."""
        from websockets.asyncio.server import serve

        async def start() -> None:
            self._server = await serve(self._handle, "127.0.0.1", self.port, process_request=self._http)
            self.port = self._server.sockets[0].getsockname()[1]

        self._run(start())

    def stop(self) -> None:
        """Stop listening and drop every connection, as a daemon that stops does."""

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None

        self._run(stop())

    def _http(self, connection: Any, request: Any) -> Any:
        path = request.path.split("?", 1)[0]
        if path == "/api":
            return None if self.api_up else connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "away\n")
        target = (PANEL_DIR / (path.removeprefix("/panel").lstrip("/") or "index.html")).resolve()
        if not path.startswith("/panel") or not target.is_file() or not target.is_relative_to(PANEL_DIR):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        body = target.read_bytes()
        headers = Headers(
            [
                ("Content-Type", mimetypes.guess_type(target.name)[0] or "application/octet-stream"),
                ("Content-Length", str(len(body))),
                # The daemon's policy: nothing from anywhere but itself.
                ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws://127.0.0.1:*"),
            ]
        )
        return Response(HTTPStatus.OK, "OK", headers, body)

    async def _handle(self, ws: Any) -> None:
        auth = json.loads(await ws.recv())
        self.received.append(auth)
        if auth.get("type") != "auth" or auth.get("token") not in self._valid:
            await ws.close(4403, "bad token")
            return
        self._valid.discard(TOKEN)  # one-time
        welcome = {"ok": True, "type": "welcome", "client": "client-1"}
        if self.resume:
            self._resumes += 1
            welcome["resume_token"] = f"resume-{self._resumes}"
            self._valid.add(welcome["resume_token"])
        await ws.send(json.dumps(welcome))
        self.clients.add(ws)
        try:
            async for raw in ws:
                request = json.loads(raw)
                self.received.append(request)
                if request.get("type") == "subscribe":
                    answer = {"id": request["id"], "ok": True, "state": self.snapshot, "control": "x"}
                    await ws.send(json.dumps(answer))
                elif request.get("type") == "figures":
                    await ws.send(json.dumps({"id": request["id"], "ok": True, "figures": FIGURES}))
        finally:
            self.clients.discard(ws)

    def push(self, message: dict[str, Any]) -> None:
        async def send() -> None:
            for ws in list(self.clients):
                await ws.send(json.dumps(message))

        self._run(send())


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    with FakeDaemon() as fake:
        yield fake


def test_panel_ringing_talking_hold_wrap_up(daemon: FakeDaemon, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 360})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"http://127.0.0.1:{daemon.port}/panel/#token={TOKEN}")

            expect(page.locator("#connection")).to_have_text("connected")
            assert "token" not in page.url  # dropped from the address bar and history
            expect(page.locator("#call-state")).to_have_text("Ringing")
            expect(page.locator("#peer")).to_have_text("from sip:+49301234567@pbx")
            expect(page.locator("#fig-aht")).to_have_text("5:02")
            expect(page.locator("#fig-calls")).to_have_text("14")

            daemon.push({"type": "event", "event": "state", **TALKING})
            expect(page.locator("#call-state")).to_have_text("Talking")
            expect(page.locator("#agent-state")).to_have_text("on call")
            first = page.locator("#main-timer").inner_text()
            assert first.startswith("1:0"), first  # 62 s when it arrived
            expect(page.locator("#main-timer")).not_to_have_text(first)  # the talk timer counts

            daemon.push({"type": "event", "event": "state", **HELD})
            daemon.push({"type": "event", "event": "hold_reminder", "call": "a84b@pbx"})
            expect(page.locator("#call-state")).to_have_text("On hold")
            expect(page.locator("#hold-countdown")).to_have_text(re.compile(r"^1:[0-2]\d$"))  # 89 s, counting down
            expect(page.locator("#notice")).to_have_text("Check in with the customer on hold.")
            shot = tmp_path / "panel.png"
            page.screenshot(path=str(shot))
            assert shot.read_bytes()[:4] == b"\x89PNG"
            if keep := os.environ.get("OFFHOOK_PANEL_SCREENSHOT"):
                shutil.copyfile(shot, REPO_ROOT / keep)

            daemon.push({"type": "event", "event": "state", **WRAP_UP})
            expect(page.locator("#call-state")).to_have_text("Wrap-up")
            expect(page.locator("#wrap-block")).to_be_visible()
            expect(page.locator("#hold-block")).to_be_hidden()
            expect(page.locator("#wrap-timer")).to_have_text(re.compile(r"^0:[0-2]\d$"))  # 27 s, counting down
        finally:
            browser.close()
    assert daemon.received[0] == {"type": "auth", "token": TOKEN}
    assert [r["type"] for r in daemon.received[1:3]] == ["subscribe", "figures"]
    port = f"127.0.0.1:{daemon.port}"
    assert requests and all(port in url for url in requests), requests  # no CDN, nothing external


def test_panel_without_token_does_not_connect(daemon: FakeDaemon) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{daemon.port}/panel/")
            expect(page.locator("#connection")).to_contain_text("no token")
            # A reload drops the token: the page says it is not connected, and shows no
            # agent or call state ("Offline / No call" read like the agent's own state).
            expect(page.locator("#agent-state")).to_be_hidden()
            expect(page.locator("#call-state")).to_have_text("Call state unknown")
            assert "offline" not in page.locator("body").inner_text().lower()
            expect(page.locator("#banner")).to_have_text(NO_TOKEN)
        finally:
            browser.close()
    assert daemon.received == []


class RealApi:
    """The daemon's real local API server (no unit, web softphone role) on a free port, in a thread.

    stop() and start() again stand for the daemon process stopping and starting: a new
    Daemon, ApiServer and TokenStore on the same port (the per-user token file and the
    daemon's state file stay, as they do across a restart).
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.server: Any = None
        self.softphone: Any = None
        self.tokens: Any = None
        self._events: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> None:
        from offhook import config
        from offhook.api.server import ApiServer
        from offhook.api.tokens import TokenStore
        from offhook.daemon.service import Daemon
        from offhook.softphone.web import WebSoftphone

        async def start() -> None:
            self.softphone = WebSoftphone()
            self.tokens = TokenStore()
            daemon = Daemon(config.validate({}), self.softphone, self.tmp_path / "state.json")
            self.server = ApiServer(daemon, self.tokens, self.port, [])
            self.server.web_softphone = self.softphone
            await self.server.start()
            self.port = self.server.port
            self._events = asyncio.create_task(daemon._softphone_loop())  # softphone events → state

        self._run(start())

    def stop(self) -> None:
        async def stop() -> None:
            if self._events is not None:
                self._events.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._events
            await self.server.stop()

        self._run(stop())

    def softphone_event(self, **message: Any) -> None:
        """What a registered web softphone reports (``softphone_event``)."""

        async def report() -> None:
            self.softphone.report(message)

        self._run(report())

    def one_time_token(self) -> str:
        """What `offhook panel` asks the daemon for."""

        async def mint() -> str:
            return str(self.tokens.one_time())

        return str(self._run(mint()))

    def __enter__(self) -> RealApi:
        self._thread.start()
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def test_offhook_panel_opens_the_real_daemon_panel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    from offhook.cli import main

    with RealApi(tmp_path) as api:
        assert main(["panel", "--api-port", str(api.port), "--print-url"]) == 0
        url = capsys.readouterr().out.strip()
        assert url.startswith(f"http://127.0.0.1:{api.port}/panel/#token=")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = browser.new_page()
                page.goto(url)
                expect(page.locator("#connection")).to_have_text("connected")
                expect(page.locator("#call-state")).to_have_text("No call")
                # The token worked once; the same URL again is refused.
                again = browser.new_page()
                again.goto(url)
                expect(again.locator("#connection")).to_contain_text("token refused")
                expect(again.locator("#agent-state")).to_be_hidden()
                expect(again.locator("#banner")).to_have_text(REFUSED)
            finally:
                browser.close()


# ---------------------------------------------------------------- the daemon goes away


@contextlib.contextmanager
def chromium_page(viewport: dict[str, int] | None = None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser.new_page(viewport=viewport or {"width": 900, "height": 410})
        finally:
            browser.close()


def assert_shows_lost_daemon(page: Any) -> None:
    """The page says it lost the daemon and shows no call or agent state, and no running timer."""
    from playwright.sync_api import expect

    expect(page.locator("#call-state")).not_to_have_text(re.compile("Talking|Ringing|On hold|No call"))
    expect(page.locator("#main-timer")).to_have_text("\u2013")
    expect(page.locator("#agent-state")).to_be_hidden()
    expect(page.locator("#banner")).to_have_text(LOST)
    expect(page.locator("#call-state")).to_have_text("Call state unknown")
    for block in ("#hold-block", "#reminder-block", "#wrap-block", "#mute"):
        expect(page.locator(block)).to_be_hidden()
    text = page.locator("body").inner_text()
    for stale in ("Talking", "Ringing", "On hold", "No call", "offline", "on call"):
        assert stale not in text, (stale, text)
    time.sleep(1.1)  # a running timer would have moved on by now
    expect(page.locator("#main-timer")).to_have_text("\u2013", timeout=0)


TRUE_AGAIN = """([call, agent]) => {
    const badge = document.getElementById("agent-state");
    return document.getElementById("banner").hidden && !badge.hidden && badge.textContent === agent
        && document.getElementById("call-state").textContent === call;
}"""


def seconds_until_true(page: Any, since: float, call_state: str, agent: str) -> float:
    """Wait (up to the issue's 2 s from ``since``) until the page shows the fresh state; how long it took."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    left_ms = max(1.0, (since + BACK_WITHIN_S - time.monotonic()) * 1000)
    try:
        page.wait_for_function(TRUE_AGAIN, arg=[call_state, agent], polling=20, timeout=left_ms)
    except PlaywrightTimeout:
        shown = page.locator("body").inner_text()
        raise AssertionError(f"not true again within {BACK_WITHIN_S} s of the daemon's return: {shown!r}") from None
    return time.monotonic() - since


def test_panel_says_it_lost_the_daemon_and_is_true_again_after_its_return(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with FakeDaemon(resume=True) as daemon, chromium_page() as page:
        page.goto(f"http://127.0.0.1:{daemon.port}/panel/#token={TOKEN}")
        expect(page.locator("#call-state")).to_have_text("Ringing")
        daemon.push({"type": "event", "event": "state", **TALKING})
        daemon.push({"type": "event", "event": "hold_reminder", "call": "a84b@pbx"})
        expect(page.locator("#call-state")).to_have_text("Talking")
        expect(page.locator("#notice")).to_be_visible()

        daemon.stop()
        assert_shows_lost_daemon(page)
        expect(page.locator("#notice")).to_be_hidden()
        expect(page.locator("#figures")).to_have_class(re.compile(r"\bstale\b"))  # greyed: may be old
        shot = tmp_path / "panel-lost-daemon.png"
        page.screenshot(path=str(shot))
        if keep := os.environ.get("OFFHOOK_PANEL_LOST_SCREENSHOT"):
            shutil.copyfile(shot, REPO_ROOT / keep)
        time.sleep(1.0)  # down long enough for the retries to reach their 1 s spacing

        # Back on the same port, the call now on hold: the page re-authenticates and takes
        # the fresh snapshot by itself.
        daemon.snapshot = HELD
        daemon.start()
        took = seconds_until_true(page, time.monotonic(), "On hold", "on call")
        print(f"panel true again {took:.3f} s after the daemon's return")
        expect(page.locator("#hold-countdown")).to_have_text(re.compile(r"^1:[0-2]\d$"))
        expect(page.locator("#connection")).to_have_text("connected")
        expect(page.locator("#figures")).not_to_have_class(re.compile(r"\bstale\b"))
    auths = [r["token"] for r in daemon.received if r.get("type") == "auth"]
    # The one-time token once; after that only the resume token the daemon gave.
    assert auths[0] == TOKEN and len(auths) >= 2 and set(auths[1:]) == {"resume-1"}, auths
    assert [r["type"] for r in daemon.received if r.get("type") != "auth"][-2:] == ["subscribe", "figures"]


def test_panel_loaded_while_the_daemon_is_away_says_so_then_connects() -> None:
    """A fresh page load that cannot reach the daemon's API (the page itself was served).

    (A page served by Playwright's routing instead would be a "public" page to Chromium,
    whose local-network checks then block its WebSocket to 127.0.0.1.)
    """
    from playwright.sync_api import expect

    with FakeDaemon(api_up=False) as daemon, chromium_page() as page:
        page.goto(f"http://127.0.0.1:{daemon.port}/panel/#token={TOKEN}")
        assert_shows_lost_daemon(page)
        expect(page.locator("#connection")).to_have_text("reconnecting\u2026")
        time.sleep(1.0)  # the retries reach their 1 s spacing

        daemon.api_up = True
        took = seconds_until_true(page, time.monotonic(), "Ringing", "available")
        print(f"panel connected {took:.3f} s after the daemon's API came up")
    assert daemon.received[0] == {"type": "auth", "token": TOKEN}


def _real_panel_on_a_call(api: RealApi, page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"http://127.0.0.1:{api.port}/panel/#token={api.one_time_token()}")
    expect(page.locator("#connection")).to_have_text("connected")
    api.softphone_event(event="incoming", call="c1", peer="sip:customer@pbx")
    api.softphone_event(event="established", call="c1")
    expect(page.locator("#call-state")).to_have_text("Talking")
    expect(page.locator("#agent-state")).to_have_text("on call")
    first = page.locator("#main-timer").inner_text()
    expect(page.locator("#main-timer")).not_to_have_text(first)  # counting


def test_real_daemon_stopped_mid_call_then_restarted(tmp_path: Path) -> None:
    """The daemon's real API server stops while the panel shows a call, then starts on the same port."""
    with RealApi(tmp_path) as api, chromium_page() as page:
        _real_panel_on_a_call(api, page)
        api.stop()
        assert_shows_lost_daemon(page)
        api.start()
        since = time.monotonic()
        # Within 2 s the page has reached the restarted daemon and shows either the truth
        # (its resume token let it back in) or plainly that it needs `offhook panel` again
        # (a daemon without resume tokens); never stale state. The truth alone:
        # test_real_daemon_restart_panel_true_again_within_2_s.
        page.wait_for_function(
            f"() => ({TRUE_AGAIN})(['No call', 'available']) || "
            f"document.getElementById('banner').textContent === {json.dumps(REFUSED)}",
            polling=20,
            timeout=BACK_WITHIN_S * 1000,
        )
        print(f"panel answered by the restarted daemon {time.monotonic() - since:.3f} s after its return")
        text = page.locator("body").inner_text()
        for stale in ("Talking", "offline", "on call"):
            assert stale not in text, (stale, text)


def test_real_daemon_restart_panel_true_again_within_2_s(tmp_path: Path) -> None:
    """The restarted daemon (a new TokenStore: no memory of the panel) lets it back in by its resume token."""
    with RealApi(tmp_path) as api, chromium_page() as page:
        _real_panel_on_a_call(api, page)
        api.stop()
        assert_shows_lost_daemon(page)
        api.start()
        took = seconds_until_true(page, time.monotonic(), "No call", "available")
        print(f"panel true again {took:.3f} s after the real daemon's return")


def test_panel_shows_the_calls_recording_and_asks_to_pause_it(daemon: FakeDaemon) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 360})
            page.goto(f"http://127.0.0.1:{daemon.port}/panel/#token={TOKEN}")
            expect(page.locator("#connection")).to_have_text("connected")
            daemon.push({"type": "event", "event": "state", **TALKING})  # recording off: nothing shown
            expect(page.locator("#call-state")).to_have_text("Talking")
            expect(page.locator("#recording")).to_be_hidden()
            expect(page.locator("#rec-toggle")).to_be_hidden()
            daemon.push({"type": "event", "event": "state", **TALKING, "recording": "on"})
            expect(page.locator("#recording")).to_have_text("recording")
            expect(page.locator("#rec-toggle")).to_have_text("Pause recording")
            page.locator("#rec-toggle").click()
            expect(page.locator("#recording")).to_have_text("recording")  # until the recorder answers
            daemon.push({"type": "event", "event": "state", **TALKING, "recording": "paused"})
            expect(page.locator("#recording")).to_have_text("recording paused")
            expect(page.locator("#rec-toggle")).to_have_text("Resume recording")
            daemon.push({"type": "event", "event": "state", **TALKING, "recording": "failed"})
            daemon.push({"type": "event", "event": "recording_failed", "call": "a84b@pbx", "reason": "disk full"})
            expect(page.locator("#recording")).to_have_text("recording failed")
            expect(page.locator("#rec-toggle")).to_be_hidden()
            expect(page.locator("#notice")).to_have_text("Recording stopped: disk full.")
        finally:
            browser.close()
    commands = [r for r in daemon.received if r.get("type") == "command"]
    assert [c["action"] for c in commands] == ["toggle_recording_pause"]
