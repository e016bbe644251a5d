"""One open live page's WebSocket (the wallboard, the inventory, the rollouts): a bounded queue of
what is pushed to it, and the sender that writes the queue out and then closes the socket with the
page's close code (1013 "reconnect", or 4401 when its token was revoked)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSCloseCode, web

from offhook.floor import auth


class Page:
    """One open page: its queue and the token it acts for."""

    def __init__(self, ws: web.WebSocketResponse, who: auth.Principal, queue_max: int) -> None:
        self.ws = ws
        self.who = who
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(queue_max)
        self.close_code = int(WSCloseCode.TRY_AGAIN_LATER)  # 4401 when its token was revoked

    def post(self, text: str | None) -> bool:
        """Queue ``text`` (None: close after what is queued); False when the queue is full."""
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            return False

    def close(self, code: int) -> None:
        """Close now with ``code``: what was queued is dropped, the page reconnects to a fresh snapshot."""
        self.close_code = code
        while not self.queue.empty():
            self.queue.get_nowait()
        self.post(None)  # the same queue: its sender may be waiting on it


async def serve(page: Page, pages: set[Page]) -> web.WebSocketResponse:
    """Keep ``page`` in ``pages`` while its socket is open, its sender writing what is posted."""
    pages.add(page)
    sender = asyncio.create_task(_send(page))
    try:
        async for _ in page.ws:  # the page sends nothing that matters; reading notices its close
            pass
    finally:
        pages.discard(page)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return page.ws


async def _send(page: Page) -> None:
    while True:
        text = await page.queue.get()
        if text is None:
            code = page.close_code
            await page.ws.close(code=code, message=b"reconnect" if code < 4000 else b"revoked")
            return
        try:
            await page.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return
