"""A live page's WebSocket closes with its code even when the browser reads the close late."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import WSCloseCode, web

from offhook.floor import pagesocket


@pytest.mark.parametrize("code", [4401, int(WSCloseCode.TRY_AGAIN_LATER)])
def test_close_code_reaches_a_slow_page(code: int) -> None:
    async def scenario() -> list[tuple[list[str], int | None]]:
        pages: set[pagesocket.Page] = set()

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(heartbeat=None)
            await ws.prepare(request)
            page = pagesocket.Page(ws, None, 10)  # type: ignore[arg-type]  # no token needed here
            page.post("snapshot")
            return await pagesocket.serve(page, pages)

        app = web.Application()
        app.router.add_get("/ws", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        seen = []
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(5):
                    async with session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws:
                        texts = [(await ws.receive()).data]
                        (page,) = pages
                        page.post("tile")
                        page.close_code = code
                        page.post(None)
                        # A busy browser: the close frame waits unread while the server goes on.
                        await asyncio.sleep(0.05)
                        texts += [message.data async for message in ws]
                        seen.append((texts, ws.close_code))
                    for _ in range(100):  # the server lets go of the page once its socket is shut
                        if not pages:
                            break
                        await asyncio.sleep(0.01)
                    assert not pages
        finally:
            await runner.cleanup()
        return seen

    for texts, closed in asyncio.run(scenario()):
        assert texts == ["snapshot", "tile"]
        assert closed == code  # not 1006: the server waits for the page's reply to its close
