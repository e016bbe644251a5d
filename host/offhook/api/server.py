"""The local API server: JSON over WebSocket, bound to 127.0.0.1 only.

Who may connect (checked before the WebSocket handshake completes):
- native programs (no Origin header), with the per-user token from the 0600 file;
- browser pages from an origin IT listed in ``api.allowed_origins`` (pairing, then
  their own token) or the daemon's own agent panel (a one-time token, then the resume
  token its welcome carries, which outlives a daemon restart); any other Origin is
  refused with 403.
The first message must authenticate (or ask to pair) within AUTH_TIMEOUT_S.

Call control has one owner at a time: the configured softphone adapter by default,
or the one client that took it; the others get a clear refusal naming the owner.
The desk unit's buttons always work. Protocol: docs/api.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import mimetypes
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from offhook.api.tokens import TokenStore
from offhook.daemon.desk import Notice
from offhook.daemon.service import Daemon, NoUnit
from offhook.softphone.base import SoftphoneError

if TYPE_CHECKING:
    from offhook.softphone.web import WebSoftphone

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 5.0
PAIRING_TIMEOUT_S = 30.0
MAX_MESSAGE_BYTES = 16 * 1024
DEFAULT_OWNER = "softphone"
COMPLETED = ("wrap_up_ended", "missed", "abandoned", "unanswered")  # a call's figures are final
CLIENT_ACTIONS = ("answer", "reject", "hangup", "hook", "hold", "mute", "escalate", "toggle_recording_pause")
AGENT_STATES = ("available", "break", "offline")  # the ones the desk lets the API set
MAX_DEPTH = 32  # no request nests deeper than 3; deeper ones would recurse in the JSON codec
MAX_NUMBER_CHARS = 32  # longer integers are no id or request number, and cost time to convert
MAX_CLOSE_REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes
PANEL_DIR = Path(__file__).resolve().parents[1] / "panel"


class ApiError(Exception):
    """A request the API refuses; the message goes back to the client."""


class Client:
    def __init__(self, connection: ServerConnection, client_id: str, origin: str | None) -> None:
        self.connection = connection
        self.id = client_id
        self.origin = origin
        self.name = origin or "local client"
        self.subscribed = False
        self.refusal = ""  # why its authentication failed, when there is more to say (for the log)
        # Events go through one queue per client: each arrives once and in order, and a
        # slow client only delays itself.
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)

    async def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.connection.send(json.dumps(message))

    async def pump(self) -> None:
        while True:
            await self.send(await self.outbox.get())

    def post(self, message: dict[str, Any]) -> None:
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:  # a client that stopped reading: drop it rather than grow
            log.warning("API client %s is not reading; closing it", self.id)
            asyncio.get_running_loop().create_task(self.connection.close(1008, "not reading events"))


class ApiServer:
    def __init__(
        self,
        daemon: Daemon,
        tokens: TokenStore,
        port: int = 8677,
        allowed_origins: list[str] | None = None,
        panel_dir: Path = PANEL_DIR,
        figures: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        """``figures``: the agent's figures for today (metrics), for the panel; None without a store."""
        self.daemon = daemon
        self.tokens = tokens
        self.port = port
        self.allowed_origins = set(allowed_origins or [])
        self.panel_dir = panel_dir
        self.figures = figures
        self.clients: dict[str, Client] = {}
        self.owner = DEFAULT_OWNER
        self._ids = itertools.count(1)
        self._server: Server | None = None
        self._pairing: asyncio.Future[bool] | None = None
        self.web_softphone: WebSoftphone | None = None  # set when softphone.kind = "api"
        self._borrower: str | None = None  # the client that borrowed the unit
        daemon.listeners.append(self._on_daemon_event)

    @property
    def panel_origins(self) -> set[str]:
        return {f"http://127.0.0.1:{self.port}", f"http://localhost:{self.port}"}

    async def start(self) -> None:
        # The token file exists from the start: a client may read it before anyone authenticates.
        try:
            self.tokens.user_token()
        except OSError as exc:
            raise OSError(f"cannot write the API token file {self.tokens.user_token_path}: {exc.strerror}") from None
        self._server = await serve(
            self._handle,
            "127.0.0.1",  # loopback only, never configurable
            self.port,
            process_request=self._check_request,
            max_size=MAX_MESSAGE_BYTES,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1] if self.port == 0 else self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # ------------------------------------------------------------ admission

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path.startswith("/panel"):
            return self._serve_panel(connection, path)
        if path != "/api":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_may_connect(origin):
            log.warning("refused WebSocket from foreign origin %s", origin)
            return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")
        return None

    def _origin_may_connect(self, origin: str) -> bool:
        # IT's list wins: an origin removed from it is refused even if it was paired once.
        return origin in self.allowed_origins or origin in self.panel_origins

    def _serve_panel(self, connection: ServerConnection, path: str) -> Response:
        relative = path.removeprefix("/panel").lstrip("/") or "index.html"
        target = (self.panel_dir / relative).resolve()
        if not target.is_relative_to(self.panel_dir.resolve()) or not target.is_file():
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        headers = Headers(
            [
                ("Content-Type", kind),
                ("Cache-Control", "no-store"),
                ("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws://127.0.0.1:* ws://localhost:*"),
                ("X-Content-Type-Options", "nosniff"),
            ]
        )
        body = target.read_bytes()
        headers["Content-Length"] = str(len(body))
        return Response(HTTPStatus.OK, "OK", headers, body)

    # ------------------------------------------------------------ sessions

    async def _handle(self, connection: ServerConnection) -> None:
        origin = connection.request.headers.get("Origin") if connection.request else None
        client = Client(connection, f"client-{next(self._ids)}", origin)
        try:
            if not await self._authenticate(client):
                return
            self.clients[client.id] = client
            log.info("API client %s connected (%s)", client.id, client.name)
            pump = asyncio.create_task(client.pump())
            try:
                async for raw in connection:
                    client.post(await self._request(client, raw))
            finally:
                pump.cancel()
        except ConnectionClosed:
            pass
        finally:
            self.clients.pop(client.id, None)
            if self.web_softphone is not None:
                self.web_softphone.detach(client)
            if self.owner == client.id:
                self._set_owner(DEFAULT_OWNER)
            if self._borrower == client.id:  # a fleet tool that vanished gives the unit back
                self._borrower = None
                self.daemon.take_back()

    async def _authenticate(self, client: Client) -> bool:
        try:
            raw = await asyncio.wait_for(client.connection.recv(), AUTH_TIMEOUT_S)
            message = _parse(raw)
        except (TimeoutError, ApiError) as exc:
            await client.connection.close(4401, _close_reason(f"authenticate first: {exc or 'timed out'}"))
            return False
        kind, token = message.get("type"), message.get("token")
        if kind == "pair" and client.origin in self.allowed_origins:
            name = message.get("name")
            name = "".join(char for char in name if char.isprintable()) if isinstance(name, str) else ""
            await self._pair(client, name.strip() or client.origin)
            return False
        if kind == "auth" and isinstance(token, str) and self._token_valid(client, token):
            welcome = {"id": message.get("id"), "ok": True, "type": "welcome", "client": client.id}
            if client.origin in self.panel_origins:
                welcome.update(self._resume_token(client.origin))
            await client.send(welcome)  # never logged: it may carry a resume token
            return True
        log.warning("API authentication failed from %s%s", client.name, client.refusal)
        await client.connection.close(4403, "bad token")
        return False

    def _token_valid(self, client: Client, token: str) -> bool:
        if client.origin is None:
            return self.tokens.check_user(token)
        if client.origin in self.panel_origins:
            # The panel's rights only: a resume token counts from the panel origin it was issued
            # to, never from a local program (who could then mint tokens or borrow the unit) or
            # a paired origin.
            check = self.tokens.check_resume(client.origin, token)
            if check == "not a resume token":
                return self.tokens.redeem_one_time(token)
            if check == "expired":
                client.refusal = " (the panel's resume token expired: run `offhook panel` again)"
            return check == "valid"
        return self.tokens.check_origin(client.origin, token)

    def _resume_token(self, origin: str) -> dict[str, str]:
        """``{"resume_token": …}`` for the welcome of a panel page; nothing if it cannot be made."""
        try:
            return {"resume_token": self.tokens.resume_token(origin)}
        except OSError as exc:  # the page still works until it loses the connection
            log.warning("cannot read the API token file for a panel resume token: %s", exc.strerror or exc)
            return {}

    async def _pair(self, client: Client, name: str) -> None:
        """Ask the agent on the desk unit; an approved origin gets its own token."""
        assert client.origin is not None
        if self._pairing is not None and not self._pairing.done():
            await client.connection.close(4409, "another pairing request is waiting")
            return
        self._pairing = asyncio.get_running_loop().create_future()
        await self.daemon.apply(self.daemon.desk.start_pairing(client.origin, self.daemon.clock()))
        try:
            approved = await asyncio.wait_for(asyncio.shield(self._pairing), PAIRING_TIMEOUT_S)
        except TimeoutError:
            approved = False
            await self.daemon.apply(self.daemon.desk.act("refuse_pairing", self.daemon.clock()))
        if approved:
            try:
                token = self.tokens.pair(client.origin, name)
            except OSError as exc:
                log.error("could not store the pairing of %s: %s", client.origin, exc.strerror or exc)
                await client.connection.close(1011, "could not store the pairing")
                return
            log.info("paired origin %s (%s)", client.origin, name)
            await client.send({"type": "paired", "ok": True, "origin": client.origin, "token": token})
            await client.connection.close(1000, "paired: reconnect with your token")
        else:
            await client.connection.close(4403, "pairing refused on the desk unit")

    # ------------------------------------------------------------ requests

    async def _request(self, client: Client, raw: str | bytes) -> dict[str, Any]:
        message_id = None
        try:
            message = _parse(raw)
            message_id = message.get("id")
            result = await self._dispatch(client, message)
            return {"id": message_id, "ok": True, **result}
        except ApiError as exc:
            return {"id": message_id, "ok": False, "error": str(exc)}

    async def _dispatch(self, client: Client, message: dict[str, Any]) -> dict[str, Any]:
        kind = message.get("type")
        daemon = self.daemon
        if kind == "state":
            return {"state": daemon.desk.snapshot(), "control": self.owner}
        if kind == "subscribe":
            client.subscribed = True
            return {"state": daemon.desk.snapshot(), "control": self.owner}
        if kind == "control":
            take = message.get("take")
            if not isinstance(take, bool):  # bool("false") is True: anything but a JSON boolean is a mistake
                raise ApiError(f"control needs 'take': true or false (a JSON boolean), not {_brief(take)}")
            return self._control(client, take)
        if kind == "command":
            action = message.get("action")
            if not isinstance(action, str) or action not in CLIENT_ACTIONS:
                raise ApiError(f"unknown action {_brief(action)} (known: {', '.join(CLIENT_ACTIONS)})")
            if action != "toggle_recording_pause":  # the recording's pause changes no call: any client may
                self._require_control(client)
            await daemon.act(str(action))
            return {}
        if kind == "agent_state":
            return await self._agent_state(message.get("state"))
        if kind in ("register_softphone", "softphone_event", "reply"):
            return self._web_softphone(client, kind, message)
        if kind in ("unit", "lend_unit", "return_unit"):
            return await self._unit_request(client, kind)
        if kind in ("update", "updates", "identify"):
            return await self._fleet_request(client, kind, message)
        if kind == "figures":
            if self.figures is None:
                raise ApiError("no call metrics store in this daemon")
            return {"figures": self.figures()}
        if kind == "one_time_token":
            if client.origin is not None:
                raise ApiError("only local programs may mint panel tokens")
            return {"token": self.tokens.one_time()}
        raise ApiError(f"unknown request type {_brief(kind)}")

    async def _agent_state(self, state: object) -> dict[str, Any]:
        if not isinstance(state, str) or state not in AGENT_STATES:
            raise ApiError(f"unknown agent state {_brief(state)} (settable: {', '.join(AGENT_STATES)})")
        daemon = self.daemon
        effects = daemon.desk.set_agent_state(state, daemon.clock())
        await daemon.apply(effects)  # a refusal still goes out as the 'refused' event, as the unit's do
        for effect in effects:
            if isinstance(effect, Notice) and effect.name == "refused":
                raise ApiError(f"agent state {state} refused: {effect.data.get('reason', 'not now')}")
        return {"agent": daemon.desk.snapshot()["agent"]}

    async def _unit_request(self, client: Client, kind: str) -> dict[str, Any]:
        """The daemon's unit for fleet tools: describe it, lend its port, take it back."""
        if kind != "unit" and client.origin is not None:
            raise ApiError("only local programs may borrow the unit")
        daemon = self.daemon
        if kind == "unit":
            info = daemon.unit if daemon.unit_connected.is_set() else None
            if info is None:
                return {"unit": None}
            return {"unit": {**info.hello, "path": daemon.unit_path, "transport": daemon.unit_transport or "serial"}}
        if kind == "return_unit":
            if client.id == self._borrower:
                self._borrower = None
                daemon.take_back()
            return {}
        try:
            path, info = await daemon.lend(client.id)
        except NoUnit as exc:
            raise ApiError(str(exc)) from None
        self._borrower = client.id
        return {"path": path, "serial": info.serial}

    async def _fleet_request(self, client: Client, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        """Firmware through the daemon's own session (``update``: admin only), the queue
        (``updates``), and a blink of its unit (``identify``). Progress comes as ``update`` events."""
        from offhook.daemon import updates

        if client.origin is not None:
            raise ApiError("only local programs may update or identify the unit")
        daemon = self.daemon
        if kind == "updates":
            return {"updates": [job.view() for job in daemon.updates.jobs]}
        if kind == "identify":
            seconds = message.get("seconds")
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 1 <= seconds <= 600:
                raise ApiError(f"identify needs 'seconds' from 1 to 600, not {_brief(seconds)}")
            try:
                info = await daemon.identify(float(seconds))
            except NoUnit as exc:
                raise ApiError(str(exc)) from None
            return {"serial": info.serial}
        admin, path = message.get("admin"), message.get("path")
        if not isinstance(admin, str) or not updates.admin_ok(admin):
            raise ApiError("update needs the admin secret (run offhook flash as root or an admin)")
        if not isinstance(path, str) or not path:
            raise ApiError("update needs 'path': the bundle file")
        try:
            data = await asyncio.to_thread(Path(path).read_bytes)
        except OSError as exc:
            raise ApiError(f"the daemon cannot read {_brief(path)}: {exc.strerror or exc}") from None
        if message.get("sha256") not in (None, updates.B.sha256_hex(data)):
            raise ApiError("the bundle changed after offhook flash read it")
        try:
            job = daemon.updates.submit(data, "local")
        except updates.UpdateRefused as exc:
            raise ApiError(f"update refused: {exc}") from None
        return {"update": job.view()}

    def _web_softphone(self, client: Client, kind: str, message: dict[str, Any]) -> dict[str, Any]:
        phone = self.web_softphone
        if phone is None:
            raise ApiError("the daemon's softphone is not the API (softphone.kind = 'baresip')")
        if kind == "register_softphone":
            try:
                phone.register(client)
            except SoftphoneError as exc:
                raise ApiError(str(exc)) from None
            return {"softphone": True}
        if phone.client is not client:
            raise ApiError("register_softphone first")
        try:
            phone.report(message) if kind == "softphone_event" else phone.reply(message)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ApiError(str(exc)) from None
        return {}

    def _control(self, client: Client, take: bool) -> dict[str, Any]:
        if take:
            if self.owner not in (DEFAULT_OWNER, client.id):
                holder = self.clients.get(self.owner)
                raise ApiError(f"call control is held by {holder.name if holder else self.owner}")
            self._set_owner(client.id)
        elif self.owner == client.id:
            self._set_owner(DEFAULT_OWNER)
        return {"control": self.owner}

    def _require_control(self, client: Client) -> None:
        if self.owner != client.id:
            holder = self.clients.get(self.owner)
            name = holder.name if holder else f"the {self.owner}"
            raise ApiError(f"call control is held by {name}: send {{'type': 'control', 'take': true}} first")

    def _set_owner(self, owner: str) -> None:
        self.owner = owner
        self._on_daemon_event({"event": "control", "owner": owner})

    # ------------------------------------------------------------ events

    def _on_daemon_event(self, message: dict[str, Any]) -> None:
        if (
            message.get("event") == "recorded"
            and message.get("moment") in COMPLETED
            and self.figures is not None
            and any(client.subscribed for client in self.clients.values())
        ):
            # Today's report reads every call of the day: only worth it when a panel listens.
            try:
                self._on_daemon_event({"event": "figures", "figures": self.figures()})
            except Exception:  # figures are a nicety: never break event delivery
                log.exception("could not compute today's figures")
        if message.get("event") == "pairing_answer" and self._pairing is not None and not self._pairing.done():
            self._pairing.set_result(bool(message.get("approved")))
        for client in list(self.clients.values()):
            if client.subscribed:
                client.post({"type": "event", **message})


def _parse(raw: str | bytes) -> dict[str, Any]:
    """A request as a dict of plain JSON: finite numbers, shallow nesting; ApiError (one line) otherwise."""
    try:
        message = json.loads(raw, parse_float=_finite, parse_int=_short_int, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(f"not JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # also UnicodeDecodeError
        raise ApiError(f"not JSON: {_brief(str(exc), quote=False)}") from None
    if not isinstance(message, dict):
        raise ApiError("a request must be a JSON object")
    if _too_deep(message):
        raise ApiError(f"not JSON: nested deeper than {MAX_DEPTH} levels")
    return message


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as infinity, which nothing downstream can use
        raise ValueError(f"number out of range: {text[:MAX_NUMBER_CHARS]}")
    return value


def _short_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise ValueError(f"number longer than {MAX_NUMBER_CHARS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_deep(value: object) -> bool:
    # Iterative: the point is to refuse what would recurse too deeply elsewhere (e.g. echoing the id).
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            if depth > MAX_DEPTH:
                return True
            stack.extend((child, depth + 1) for child in children)
    return False


def _brief(value: object, limit: int = 60, quote: bool = True) -> str:
    """A client's value in an error: one line (repr escapes newlines), cut to ``limit`` characters."""
    text = repr(value) if quote else " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _close_reason(text: str) -> str:
    return text.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
