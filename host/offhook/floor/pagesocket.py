"""One open live page's WebSocket (the wallboard, the inventory, the rollouts): a bounded queue of
what is pushed to it, and the loop that writes the queue out and then closes the socket with the
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
    """Keep ``page`` in ``pages`` while its socket is open, writing out what is posted to it.

    Reading runs in a task of its own that is stopped before a close: aiohttp's close() from
    another task than the reader's drops the connection without waiting for the page's reply, and
    the browser's side then sees 1006 instead of the close code (4401 for a revoked token)."""
    pages.add(page)
    reading = asyncio.create_task(_until_closed(page.ws))
    try:
        while True:
            if reading.done():  # the page went away
                return page.ws
            if page.queue.empty():  # wait for the next post, or for the page to go
                posted = asyncio.ensure_future(page.queue.get())
                await asyncio.wait((posted, reading), return_when=asyncio.FIRST_COMPLETED)
                if not posted.done():
                    posted.cancel()
                    return page.ws
                text = posted.result()
            else:  # a burst: no task per message
                text = page.queue.get_nowait()
            if text is None:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
                code = page.close_code
                await page.ws.close(code=code, message=b"reconnect" if code < 4000 else b"revoked")
                return page.ws
            try:
                await page.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return page.ws
    finally:
        pages.discard(page)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def _until_closed(ws: web.WebSocketResponse) -> None:
    async for _ in ws:  # the page sends nothing that matters; reading notices its close
        pass
