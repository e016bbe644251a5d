"""The agent panel in headless Chromium (Debian's `chromium`, driven by Playwright).

A tiny fake daemon serves the real panel files at /panel/ and the documented API
messages on ws://127.0.0.1:PORT/api (docs/panel.md): it checks the one-time token,
answers `subscribe` with a ringing call, then the test pushes talking, on hold and
wrap-up states and today's figures, and reads what the page shows. With
OFFHOOK_PANEL_SCREENSHOT=docs/img/panel.png the on-hold screenshot is kept there.

These tests need Debian's chromium: without it they fail (they do not skip).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
import os
import re
import shutil
import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

PANEL_DIR = REPO_ROOT / "host" / "offhook" / "panel"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "one-time-token-for-the-test"


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
    """Serves /panel/* and /api like the daemon, in a thread with its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.received: list[dict[str, Any]] = []
        self.clients: set[Any] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeDaemon:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        async with serve(self._handle, "127.0.0.1", 0, process_request=self._http) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    def _http(self, connection: Any, request: Any) -> Any:
        path = request.path.split("?", 1)[0]
        if path == "/api":
            return None
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
        if auth != {"type": "auth", "token": TOKEN}:
            await ws.close(4403, "bad token")
            return
        await ws.send(json.dumps({"ok": True, "type": "welcome", "client": "client-1"}))
        self.clients.add(ws)
        try:
            async for raw in ws:
                request = json.loads(raw)
                self.received.append(request)
                if request.get("type") == "subscribe":
                    await ws.send(json.dumps({"id": request["id"], "ok": True, "state": RINGING, "control": "x"}))
                elif request.get("type") == "figures":
                    await ws.send(json.dumps({"id": request["id"], "ok": True, "figures": FIGURES}))
        finally:
            self.clients.discard(ws)

    def push(self, message: dict[str, Any]) -> None:
        async def send() -> None:
            for ws in list(self.clients):
                await ws.send(json.dumps(message))

        asyncio.run_coroutine_threadsafe(send(), self.loop).result(10)


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
        finally:
            browser.close()
    assert daemon.received == []


class RealApi:
    """The daemon's real local API server (no unit, web softphone role) on a free port, in a thread."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)

    async def _main(self) -> None:
        from offhook import config
        from offhook.api.server import ApiServer
        from offhook.api.tokens import TokenStore
        from offhook.daemon.service import Daemon
        from offhook.softphone.web import WebSoftphone

        cfg = config.validate({})
        softphone = WebSoftphone()
        server = ApiServer(Daemon(cfg, softphone, self.tmp_path / "state.json"), TokenStore(), 0, [])
        softphone.attach(server)
        self._stop = asyncio.Event()
        await server.start()
        self.port = server.port
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop()

    def __enter__(self) -> RealApi:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
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
            finally:
                browser.close()
