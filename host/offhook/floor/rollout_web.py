"""Central's IT page of firmware rollouts: each rollout and each unit's phase, pushed live.

The truth is PostgreSQL (rollouts.RolloutService keeps each desk's reported phase and each rollout's
state there, on whichever central instance ticks it), so this side reads it, not ingest: every
``every_s`` while at least one page is open, one read of both tables (rollouts.views, the CLI's own
view) is compared with the last one, and each rollout that changed is pushed as one ``rollout``
message to every open page. Nothing is read while no page is open.

Protocol (``/ws/rollouts``, JSON text frames, server to page only, IT role): ``snapshot`` at
connect (``rollouts``: every rollout, newest first), then ``rollout`` (one rollout's whole view) as
it changes, and ``ping`` every ``ping_s``; every message has central's ``now``. A page whose token
is revoked is closed (4401) within ``recheck_s``; one that falls behind is closed (1013) and
reconnects to a fresh snapshot. ``GET /api/rollouts`` answers the same view once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from aiohttp import WSCloseCode, web

from offhook.floor import auth, pagesocket, rollouts
from offhook.floor.pagesocket import Page

log = logging.getLogger("offhook.central.web")

ROLE = "inventory"  # what IT's role grants (auth.GRANTS): the inventory, settings and rollouts
EVERY_S = 1.0
QUEUE_MAX = 1000


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), sort_keys=True)


class RolloutBoard:
    """The rollouts page's live side; FloorWeb routes to it and runs :meth:`run` beside its own loops.

    ``query(sql)`` runs a read on central's database; ``require(request, what)`` returns the
    principal or raises the HTTP refusal; ``still_valid(ids)`` the token ids not revoked."""

    def __init__(
        self,
        query: Callable[[str], Awaitable[list[tuple[Any, ...]]]],
        require: Callable[[web.Request, str], Awaitable[auth.Principal]],
        still_valid: Callable[[list[int]], Awaitable[set[int]]],
        *,
        every_s: float = EVERY_S,
        ping_s: float = 5.0,
        recheck_s: float = 5.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.query = query
        self.require = require
        self.still_valid = still_valid
        self.every_s = every_s
        self.ping_s = ping_s
        self.recheck_s = recheck_s
        self.wall = wall
        self.watchers: set[Page] = set()
        self.last: dict[str, str] = {}  # rollout name: its view as last pushed (JSON)
        self._opened = asyncio.Event()

    async def read(self) -> list[dict[str, Any]]:
        return rollouts.views(await self.query(rollouts.ROLLOUTS_SQL), await self.query(rollouts.UNITS_SQL))

    def changed(self, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The views that differ from what was last pushed; remembers these."""
        out = []
        for view in views:
            text = dumps(view)
            if self.last.get(view["name"]) != text:
                self.last[view["name"]] = text
                out.append(view)
        return out

    def push(self, text: str) -> None:
        for watcher in list(self.watchers):
            if not watcher.post(text):
                log.warning("rollouts page of %s fell behind; closing it (it reconnects)", watcher.who.name)
                self.watchers.discard(watcher)
                watcher.close(int(WSCloseCode.TRY_AGAIN_LATER))

    async def run(self) -> None:
        pinged = checked = time.monotonic()
        while True:
            if not self.watchers:
                self.last.clear()  # the next page's snapshot is read fresh anyway
                self._opened.clear()
                await self._opened.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._opened.wait(), self.every_s)
            self._opened.clear()
            try:
                for view in self.changed(await self.read()):
                    self.push(dumps({"type": "rollout", "now": self.wall(), "rollout": view}))
            except psycopg.Error as exc:
                log.warning("central web: rollouts not refreshed (%s)", " ".join(str(exc).split())[:200])
            now = time.monotonic()
            if now - pinged >= self.ping_s:
                pinged = now
                self.push(dumps({"type": "ping", "now": self.wall()}))
            if now - checked >= self.recheck_s:
                checked = now
                await self._recheck()

    async def _recheck(self) -> None:
        """Close the pages of revoked tokens."""
        ids = sorted({watcher.who.token_id for watcher in self.watchers})
        if not ids:
            return
        try:
            valid = await self.still_valid(ids)
        except psycopg.Error:
            return
        for watcher in list(self.watchers):
            if watcher.who.token_id not in valid:
                log.info("rollouts page of %s closed: its token was revoked", watcher.who.name)
                self.watchers.discard(watcher)
                watcher.close(4401)

    # ------------------------------------------------------------ requests

    async def api(self, request: web.Request) -> web.StreamResponse:
        await self.require(request, ROLE)
        return web.Response(
            text=dumps({"now": self.wall(), "rollouts": await self.read()}), content_type="application/json"
        )

    async def ws(self, request: web.Request) -> web.StreamResponse:
        who = await self.require(request, ROLE)
        views = await self.read()
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=4096, compress=False)
        await ws.prepare(request)
        watcher = Page(ws, who, QUEUE_MAX)
        watcher.post(dumps({"type": "snapshot", "now": self.wall(), "rollouts": views}))
        if not self.watchers:  # nobody else to tell: what this page has is what was last pushed
            self.last = {view["name"]: dumps(view) for view in views}
        self._opened.set()
        return await pagesocket.serve(watcher, self.watchers)
