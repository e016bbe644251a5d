"""Central's web side: HTTPS pages, a JSON API and the wallboard's WebSocket (aiohttp).

- HTTPS only, with the certificate IT provides (``offhook central init`` makes a test one). Every
  request but the login page and its files needs a role (floor/auth.py): a session cookie
  (``__Host-offhook``: HttpOnly, Secure, SameSite=Strict) set by ``POST /api/login`` with a token,
  or ``Authorization: Bearer <token>`` for scripts. Refused: no token, a wrong one, a revoked one.
- The wallboard is pushed: central's ingest calls :meth:`FloorWeb.live` with each accepted state and
  presence message; the changed tile is serialised once and queued to every open WebSocket. Today's
  figures come from PostgreSQL every ``figures_every_s`` and are pushed only when they change. An
  agent's name comes with the desk's call records as central receives them; a desk that comes
  online without one has its latest call's looked up at once (every name is read again each
  ``AGENTS_EVERY_S`` too).
- IT's inventory is pushed the same way (``/ws/inventory``: ``snapshot``, then ``unit`` as each
  desk's presence, unit, state or records change it, and ``ping``), from wallboard.Inventory.
- A WebSocket whose token is revoked is closed (4401) within ``recheck_s``; a page then goes back
  to its login. A slow page whose queue overflows is closed too (1013): it reconnects and gets a
  fresh snapshot, so it is never silently behind.
- ``GET /bundles/{sha256}`` (rollouts.bundle_handler, with Range so a cut download resumes) needs
  no role: a desk has broker credentials, not a web token, and a bundle is no secret. It is signed
  firmware that the daemon and the unit each check against the fleet key, board and version before
  use, and it is named only by its sha256, which a desk learns from its own ``update`` topic (the
  broker's ACL lets only central write it and only that desk read it).
- The rollouts page (IT) is pushed too, from PostgreSQL, where the rollouts live (floor/rollout_web.py:
  ``/rollouts``, ``/api/rollouts``, ``/ws/rollouts``).
- No token or session id reaches a log: the access log has no headers, and tokens never travel in
  URLs (the login page posts it).

Protocol (``/ws/wallboard``, JSON text frames, server to page only): ``snapshot`` at connect (every
tile, today's figures, ``hold_reminder_s``), then ``tile`` and ``figures`` as they change, and
``ping`` every ``ping_s``; every message has central's ``now`` (epoch seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import WSCloseCode, web

from offhook.floor import auth, pagesocket, pgstore, policy, rollouts
from offhook.floor import wallboard as W
from offhook.floor.pagesocket import Page
from offhook.floor.rollout_web import RolloutBoard
from offhook.settings import PolicyError

log = logging.getLogger("offhook.central.web")

PAGES = Path(__file__).with_name("pages")
COOKIE = "__Host-offhook"
AGENTS_EVERY_S = 30.0  # how often every agent's name is read again from the latest call records
NAME_SOON_S = 0.1  # desks coming online together have their names looked up in one query
QUEUE_MAX = 5000  # messages waiting for one page: past it the page is closed and reconnects
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Strict-Transport-Security": "max-age=31536000",
    "Cache-Control": "no-store",
}
# Pages and who may open them; the files under pages/ a page loads need no role.
PAGE_ROLES = {"wallboard": "live", "inventory": "inventory", "settings": "inventory", "rollouts": "inventory"}
INVENTORY_SQL = """
SELECT d.site, d.desk, coalesce(i.serial, '') AS serial, coalesce(d.team, s.team, '') AS team,
    coalesce(a.agent, '') AS agent, coalesce(i.board, '') AS board, coalesce(i.firmware, '') AS firmware,
    coalesce(i.slot, '') AS slot, coalesce(i.health, '') AS health, coalesce(i.transport, '') AS transport,
    coalesce(i.connected, false) AS connected, d.online,
    extract(epoch FROM greatest(d.updated_at, i.updated_at, s.updated_at))::float8 AS last_seen
FROM (SELECT site, desk, team, online, updated_at FROM desks
      UNION SELECT site, desk, NULL, false, updated_at FROM inventory
      WHERE (site, desk) NOT IN (SELECT site, desk FROM desks)) d
LEFT JOIN inventory i USING (site, desk)
LEFT JOIN live_state s USING (site, desk)
LEFT JOIN LATERAL (SELECT agent FROM calls c WHERE c.site = d.site AND c.desk = d.desk
                   AND c.local_day >= current_date - 30 ORDER BY c.local_day DESC, c.ring_wall DESC LIMIT 1) a ON true
ORDER BY d.site, d.desk
"""
INVENTORY_FIELDS = (
    "site",
    "desk",
    "serial",
    "team",
    "agent",
    "board",
    "firmware",
    "slot",
    "health",
    "transport",
    "connected",
    "online",
    "last_seen",
)


def server_ssl(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


class FloorWeb:
    def __init__(
        self,
        dsn: str,
        *,
        ssl_context: ssl.SSLContext,
        host: str = "127.0.0.1",
        port: int = 8443,
        hold_reminder_s: float = W.HOLD_REMINDER_S,
        figures_every_s: float = 2.0,
        ping_s: float = 5.0,
        recheck_s: float = 5.0,
        rollouts_every_s: float = 1.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.dsn = dsn
        self.ssl_context = ssl_context
        self.host = host
        self.port = port
        self.board = W.Board(hold_reminder_s)
        self.figures_every_s = figures_every_s
        self.ping_s = ping_s
        self.recheck_s = recheck_s
        self.wall = wall
        self.pages: set[Page] = set()
        self.inventory = W.Inventory()
        self.it_pages: set[Page] = set()  # open inventory pages
        self._naming: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self._db: psycopg.AsyncConnection[Any] | None = None
        self._db_lock = asyncio.Lock()
        self._agents_due = 0.0
        # Optional probe (benchmarks): called with each tile message as it is queued.
        self.on_push: Callable[[str], None] | None = None
        # The rollouts page (IT): each rollout and each unit's phase, pushed as they change.
        self.rollout_board = RolloutBoard(
            self._query,
            self._require,
            lambda ids: self._auth(lambda conn: auth.still_valid(conn, ids)),
            every_s=rollouts_every_s,
            ping_s=ping_s,
            recheck_s=recheck_s,
            wall=wall,
        )

    # ------------------------------------------------------------ from central's ingest

    def live(self, kind: str, site: str, desk: str, body: dict[str, Any]) -> None:
        """Each accepted state, presence, inventory and records body: the tile and the inventory row
        it changes are pushed at once; a desk that came online without a name has it looked up."""
        now = self.wall()
        view = None
        if kind == "records":
            view = self.board.learn_agent(site, desk, body["records"])
        elif kind in ("state", "presence"):
            view = self.board.apply(kind, site, desk, body)
        if view is not None:
            self._push(W.tile_message(view, now))
        unit = self.inventory.apply(kind, site, desk, body, now)
        if unit is not None:
            self._push(W.unit_message(unit, now), self.it_pages)
        if self.board.unnamed and self._naming is None and self.ready.is_set():
            self._naming = asyncio.get_running_loop().create_task(self._name_soon())

    async def _name_soon(self) -> None:
        try:
            await asyncio.sleep(NAME_SOON_S)
            keys = self.board.take_unnamed()
            if keys:
                rows = await self._query(W.AGENTS_OF_SQL, ([site for site, _ in keys], [desk for _, desk in keys]))
                for view in self.board.name_agents({(s, d): (a, w) for s, d, a, w in rows}):
                    self._push(W.tile_message(view, self.wall()))
        except psycopg.Error as exc:
            log.warning("central web: agents' names not read (%s)", " ".join(str(exc).split())[:200])
        finally:
            self._naming = None

    def _push(self, text: str, pages: set[Page] | None = None) -> None:
        pages = self.pages if pages is None else pages
        if self.on_push is not None and pages is self.pages:
            self.on_push(text)
        for page in list(pages):
            if not page.post(text):
                log.warning("page of %s fell behind; closing it (it reconnects)", page.who.name)
                pages.discard(page)
                page.close(int(WSCloseCode.TRY_AGAIN_LATER))

    # ------------------------------------------------------------ running

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._headers], client_max_size=64 * 1024)
        app.router.add_get("/", self._root)
        app.router.add_get("/login", self._page_file("login.html"))
        app.router.add_get("/wallboard", self._page("wallboard"))
        app.router.add_get("/inventory", self._page("inventory"))
        app.router.add_get("/settings", self._page("settings"))
        app.router.add_get("/api/settings", self._settings)
        app.router.add_post("/api/settings", self._settings_change)
        app.router.add_static("/static/", PAGES, show_index=False, follow_symlinks=False)
        app.router.add_post("/api/login", self._login)
        app.router.add_post("/api/logout", self._logout)
        app.router.add_get("/api/me", self._me)
        app.router.add_get("/api/live", self._live)
        app.router.add_get("/api/inventory", self._inventory)
        app.router.add_get("/ws/wallboard", self._wallboard_ws)
        app.router.add_get("/ws/inventory", self._inventory_ws)
        app.router.add_get("/bundles/{sha256}", rollouts.bundle_handler(self.dsn))
        app.router.add_get("/rollouts", self._page("rollouts"))
        app.router.add_get("/api/rollouts", self.rollout_board.api)
        app.router.add_get("/ws/rollouts", self.rollout_board.ws)
        return app

    async def run(self) -> None:
        """Serve until cancelled."""
        await self._seed()
        runner = web.AppRunner(self.app(), access_log=log, access_log_format='%a "%r" %s %b %Tfs')
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, ssl_context=self.ssl_context, reuse_address=True)
        await site.start()
        if self.port == 0:
            server = site._server  # the port the OS picked
            assert server is not None and isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
        log.info("central web: https://%s:%d/", self.host, self.port)
        self.ready.set()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._figures_loop())
                group.create_task(self._ping_loop())
                group.create_task(self._recheck_loop())
                group.create_task(self.rollout_board.run())
        finally:
            for page in [*self.pages, *self.it_pages]:
                page.post(None)
            await runner.cleanup()
            if self._db is not None:
                with contextlib.suppress(Exception):
                    await self._db.close()

    async def _query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        async with self._db_lock:
            for attempt in (1, 2):
                try:
                    if self._db is None or self._db.closed:
                        self._db = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=3)
                    cur = await self._db.execute(sql, params)
                    return list(await cur.fetchall()) if cur.description else []
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    if self._db is not None:
                        with contextlib.suppress(Exception):
                            await self._db.close()
                    self._db = None
                    if attempt == 2:
                        raise
        return []

    async def _auth(self, call: Callable[[psycopg.AsyncConnection[Any]], Awaitable[Any]]) -> Any:
        async with self._db_lock:
            for attempt in (1, 2):
                try:
                    if self._db is None or self._db.closed:
                        self._db = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=3)
                    return await call(self._db)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    self._db = None
                    if attempt == 2:
                        raise

    async def _seed(self) -> None:
        """The board from PostgreSQL, before the broker's retained messages (which win if newer)."""
        backoff = 0.2
        while True:
            try:
                conn = await pgstore.connect(self.dsn)
                try:
                    await pgstore.migrate(conn)
                    await conn.commit()
                finally:
                    await conn.close()
                W.load_live(self.board, await self._query(W.LIVE_SQL))
                units = await self._query(INVENTORY_SQL)
                self.inventory.seed([dict(zip(INVENTORY_FIELDS, row, strict=True)) for row in units])
                await self._refresh_figures()
                return
            except psycopg.OperationalError as exc:
                log.warning("central web: database unavailable (%s); retrying", " ".join(str(exc).split())[:200])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _refresh_figures(self) -> None:
        figures = W.figures_rows(await self._query(W.FIGURES_SQL))
        now = time.monotonic()
        if now >= self._agents_due:  # names change at a shift's start, not every second: a cheaper period
            self._agents_due = now + AGENTS_EVERY_S
            names = {(s, d): (a, w) for s, d, a, w in await self._query(W.AGENTS_SQL)}
            for view in self.board.name_agents(names):
                self._push(W.tile_message(view, self.wall()))
        if figures != self.board.figures:
            self.board.figures = figures
            self._push(W.figures_message(figures, self.wall()))

    async def _figures_loop(self) -> None:
        while True:
            await asyncio.sleep(self.figures_every_s)
            try:
                await self._refresh_figures()
            except psycopg.Error as exc:
                log.warning("central web: figures not refreshed (%s)", " ".join(str(exc).split())[:200])

    async def _ping_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_s)
            ping = W.dumps({"type": "ping", "now": self.wall()})
            self._push(ping)
            self._push(ping, self.it_pages)

    async def _recheck_loop(self) -> None:
        """Close the WebSockets of revoked tokens."""
        while True:
            await asyncio.sleep(self.recheck_s)
            ids = sorted({page.who.token_id for page in [*self.pages, *self.it_pages]})
            if not ids:
                continue
            try:
                valid = await self._auth(lambda conn, ids=ids: auth.still_valid(conn, ids))  # type: ignore[misc]
            except psycopg.Error:
                continue
            for pages in (self.pages, self.it_pages):
                for page in list(pages):
                    if page.who.token_id in valid:
                        continue
                    log.info("page of %s closed: its token was revoked", page.who.name)
                    pages.discard(page)
                    page.post(None)  # its sender closes it, after what was queued
                    page.close_code = 4401

    # ------------------------------------------------------------ requests

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response = await handler(request)
        except psycopg.Error:
            response = _error(HTTPStatus.SERVICE_UNAVAILABLE, "the database is unavailable; try again")
        if not response.prepared:
            response.headers.update(HEADERS)
        return response

    async def principal(self, request: web.Request) -> auth.Principal | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            secret = header[7:].strip()
            return await self._auth(lambda conn: auth.principal_of_token(conn, secret))
        session = request.cookies.get(COOKIE)
        if session:
            return await self._auth(lambda conn: auth.principal_of_session(conn, session))
        return None

    async def _require(self, request: web.Request, what: str) -> auth.Principal:
        who = await self.principal(request)
        if who is None:
            raise _error_exc(HTTPStatus.UNAUTHORIZED, "log in with a token")
        if not auth.allowed(who.role, what):
            log.info("refused %s for %s (role %s)", request.path, who.name, who.role)
            raise _error_exc(HTTPStatus.FORBIDDEN, f"the {who.role} role may not see this")
        return who

    async def _root(self, request: web.Request) -> web.StreamResponse:
        who = await self.principal(request)
        if who is None:
            raise web.HTTPFound("/login")
        raise web.HTTPFound("/wallboard" if auth.allowed(who.role, "live") else "/inventory")

    def _page_file(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(PAGES / name, headers={"Content-Type": "text/html; charset=utf-8"})

        return handler

    def _page(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            who = await self.principal(request)
            if who is None:
                raise web.HTTPFound(f"/login?next=/{name}")
            if not auth.allowed(who.role, PAGE_ROLES[name]):
                return web.Response(
                    status=HTTPStatus.FORBIDDEN,
                    text=f"The {who.role} role may not open the {name}.\n",
                    content_type="text/plain",
                )
            return web.FileResponse(PAGES / f"{name}.html", headers={"Content-Type": "text/html; charset=utf-8"})

        return handler

    async def _login(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
            secret = str(body["token"])
        except (ValueError, KeyError, TypeError):
            return _error(HTTPStatus.BAD_REQUEST, 'send {"token": "…"} as JSON')
        who = await self._auth(lambda conn: auth.principal_of_token(conn, secret))
        if who is None:
            log.warning("refused a login from %s: unknown or revoked token", request.remote)
            return _error(HTTPStatus.UNAUTHORIZED, "this token is not valid (wrong or revoked)")
        session = await self._auth(lambda conn: auth.open_session(conn, who))
        log.info("login: %s (%s) from %s", who.name, who.role, request.remote)
        response = web.json_response({"name": who.name, "role": who.role, "home": _home(who.role)})
        response.set_cookie(
            COOKIE, session, path="/", secure=True, httponly=True, samesite="Strict", max_age=auth.SESSION_S
        )
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        session = request.cookies.get(COOKIE)
        if session:
            await self._auth(lambda conn: auth.close_session(conn, session))
        response = web.Response(status=HTTPStatus.NO_CONTENT)
        response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return response

    async def _me(self, request: web.Request) -> web.StreamResponse:
        who = await self.principal(request)
        if who is None:
            return _error(HTTPStatus.UNAUTHORIZED, "log in with a token")
        return web.json_response({"name": who.name, "role": who.role, "home": _home(who.role)})

    async def _live(self, request: web.Request) -> web.StreamResponse:
        await self._require(request, "live")
        snapshot = self.board.snapshot(self.wall())
        site, team = request.query.get("site"), request.query.get("team")
        snapshot["tiles"] = [
            t for t in snapshot["tiles"] if (site is None or t["site"] == site) and (team is None or t["team"] == team)
        ]
        return web.Response(text=W.dumps(snapshot), content_type="application/json")

    async def _inventory(self, request: web.Request) -> web.StreamResponse:
        await self._require(request, "inventory")
        rows = [dict(zip(INVENTORY_FIELDS, row, strict=True)) for row in await self._query(INVENTORY_SQL)]
        return web.json_response({"now": self.wall(), "units": rows})

    async def _settings(self, request: web.Request) -> web.StreamResponse:
        """Floor-wide settings (IT): one desk's effective values with their sources, or every layer."""
        await self._require(request, "inventory")
        view = await asyncio.to_thread(policy.page_view, self.dsn, request.query.get("desk", ""))
        if view is None:
            return _error(HTTPStatus.NOT_FOUND, "no such desk has been seen on the floor")
        return web.json_response(view)

    async def _settings_change(self, request: web.Request) -> web.StreamResponse:
        who = await self._require(request, "inventory_admin")
        try:
            body = await request.json()
        except ValueError:
            return _error(HTTPStatus.BAD_REQUEST, "send JSON")
        try:
            done = await asyncio.to_thread(policy.page_change, self.dsn, body)
        except PolicyError as exc:
            return _error(HTTPStatus.BAD_REQUEST, str(exc))
        log.info(
            "settings: %s changed %s %s (version %d)", who.name, body.get("layer"), body.get("target"), done["version"]
        )
        return web.json_response(done)

    async def _wallboard_ws(self, request: web.Request) -> web.StreamResponse:
        who = await self._require(request, "live")
        return await self._socket(request, who, self.pages, lambda: self.board.snapshot(self.wall()))

    async def _inventory_ws(self, request: web.Request) -> web.StreamResponse:
        """IT's inventory, pushed: ``snapshot`` (every unit), then ``unit`` as each changes, ``ping``."""
        who = await self._require(request, "inventory")
        return await self._socket(request, who, self.it_pages, lambda: self.inventory.snapshot(self.wall()))

    async def _socket(
        self, request: web.Request, who: auth.Principal, pages: set[Page], snapshot: Callable[[], dict[str, Any]]
    ) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=4096, compress=False)
        await ws.prepare(request)
        page = Page(ws, who, QUEUE_MAX)
        page.post(W.dumps(snapshot()))
        return await pagesocket.serve(page, pages)


def _home(role: str) -> str:
    return "/wallboard" if auth.allowed(role, "live") else "/inventory"


def _error(status: HTTPStatus, message: str) -> web.Response:
    return web.Response(
        status=status, text=json.dumps({"error": message}) + "\n", content_type="application/json", headers=HEADERS
    )


def _error_exc(status: HTTPStatus, message: str) -> web.HTTPException:
    kind = {HTTPStatus.UNAUTHORIZED: web.HTTPUnauthorized, HTTPStatus.FORBIDDEN: web.HTTPForbidden}[status]
    return kind(text=json.dumps({"error": message}) + "\n", content_type="application/json", headers=HEADERS)
