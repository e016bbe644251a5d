"""baresip adapter over its ctrl_tcp module (netstring-framed JSON on 127.0.0.1).

What baresip 1.0.0 does and does not tell (measured on this machine):
- Events: CALL_INCOMING, CALL_RINGING (outgoing call rings far away), CALL_ESTABLISHED,
  CALL_CLOSED (param: why); many others (RTCP, SDP) are ignored here. There is no
  hold event and no mute event.
- `mute` toggles the current call's mute; its reply says "call muted" / "call un-muted":
  that reply is the only confirmation, and there is no query. The adapter never
  toggles to probe (that would briefly un-mute a muted call).
- `hold`/`resume` act on the current call; `listcalls` marks held calls "(on hold)",
  which is how hold is confirmed and how state is rebuilt after a reconnect.
- `accept` answers the newest incoming call and puts an established call on hold.
- ctrl_tcp serves ONE client: a second connection silently replaces the first, so the
  adapter keeps exactly one and never probes the port.
- Call-specific commands act on the "current call": the adapter selects it with
  `callfind CALL-ID` first. `listcalls` lists lines, not Call-IDs; after a reconnect
  calls are matched to known ids by peer URI, or selected (`line N`) and identified by
  `callstat`, whose reply carries the Call-ID (`id=…`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import socket
from collections.abc import Callable
from typing import Any

from offhook.softphone.base import (
    Call,
    CallState,
    EventKind,
    Softphone,
    SoftphoneError,
    SoftphoneEvent,
    SoftphoneUnavailable,
)
from offhook.softphone.netstring import NetstringDecoder, encode

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 3.0
_LISTCALLS_LINE = re.compile(
    r"^(?P<current>[> ])\s*\[line (?P<line>\d+)\]\s+(?P<duration>\d+:\d\d:\d\d)\s+"
    r"(?P<state>[A-Z_]+)\s+(?P<held>\(on hold\))?\s*(?P<peer>\S+)\s*$"
)
_CALLSTAT_ID = re.compile(r"\bid=(?P<id>\S+)")
_CALLSTAT_DIRECTION = re.compile(r"direction:\s*(?P<dir>Incoming|Outgoing)")
_STATE_FROM_LISTCALLS = {
    "INCOMING": CallState.INCOMING,
    "OUTGOING": CallState.OUTGOING,
    "RINGING": CallState.OUTGOING,
    "EARLY": CallState.OUTGOING,
    "ESTABLISHED": CallState.ESTABLISHED,
}


def parse_listcalls(data: str) -> list[tuple[int, str, CallState, bool]]:
    """``listcalls`` reply → [(line, peer, state, held)]; unknown lines are skipped."""
    calls = []
    for text in data.splitlines():
        match = _LISTCALLS_LINE.match(text)
        if match and match["state"] in _STATE_FROM_LISTCALLS:
            state = _STATE_FROM_LISTCALLS[match["state"]]
            calls.append((int(match["line"]), match["peer"], state, bool(match["held"])))
    return calls


class BaresipAdapter(Softphone):
    def __init__(self, host: str = "127.0.0.1", port: int = 4444, max_backoff_s: float = 5.0) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.max_backoff_s = max_backoff_s
        self.connected = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._tokens = itertools.count(1)
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        # Run in the reader, in baresip's message order, before the reply's waiter wakes.
        self._reply_hooks: dict[str, Callable[[str], None]] = {}
        self._command_lock = asyncio.Lock()
        self._runner: asyncio.Task[None] | None = None
        self._dial_waiter: asyncio.Future[str] | None = None
        self._held: list[SoftphoneEvent] | None = None  # events waiting for a CONNECTED snapshot
        self.protocol_errors = 0

    # ------------------------------------------------------------ connection

    async def start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="baresip-adapter")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        self._drop_connection("adapter stopped")

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            backoff = 0.05
            sock = writer.get_extra_info("socket")
            if sock is not None and hasattr(socket, "TCP_QUICKACK"):
                # Without it Linux delays ACKs and events arrive ~40 ms late.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._writer = writer
            reading = asyncio.create_task(self._read(reader, sock))
            try:
                await self._resync()
                self.connected.set()
                await reading
            except (SoftphoneError, OSError) as exc:
                log.warning("baresip at %s:%d: %s", self.host, self.port, exc)
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
                self._drop_connection("connection lost")

    def _drop_connection(self, why: str) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for future in self._replies.values():
            if not future.done():
                future.set_exception(SoftphoneUnavailable(f"baresip: {why}"))
        self._replies.clear()
        self._reply_hooks.clear()
        if was_connected:
            self.events.put_nowait(SoftphoneEvent(EventKind.DISCONNECTED, reason=why))

    async def _read(self, reader: asyncio.StreamReader, sock: socket.socket | None) -> None:
        decoder = NetstringDecoder()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if sock is not None and hasattr(socket, "TCP_QUICKACK"):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # Linux resets it
            for raw in decoder.feed(data):
                self._dispatch(raw)
            if decoder.error is not None:
                # The stream can no longer be trusted: reconnect and rebuild from listcalls.
                self.protocol_errors += 1
                log.error("baresip sent a malformed frame (%s); reconnecting", decoder.error)
                return

    def _dispatch(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            self.protocol_errors += 1
            log.error("baresip sent an unreadable message (%s): %.80r", exc, raw)
            return
        if message.get("response"):
            token = str(message.get("token"))
            future = self._replies.pop(token, None)
            hook = self._reply_hooks.pop(token, None)
            if hook is not None and message.get("ok"):
                hook(str(message.get("data", "")))
            if future is not None and not future.done():
                future.set_result(message)
        elif message.get("event"):
            self._on_event(message)

    # ------------------------------------------------------------ commands

    async def command(self, name: str, params: str = "", on_reply: Callable[[str], None] | None = None) -> str:
        """Send one ctrl_tcp command; returns its reply text or raises SoftphoneError.

        ``on_reply`` runs with the reply text in message order (before any event that
        baresip sent after the reply is handled).
        """
        if self._writer is None:
            raise SoftphoneUnavailable("baresip is not connected")
        token = str(next(self._tokens))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[token] = future
        if on_reply is not None:
            self._reply_hooks[token] = on_reply
        payload = {"command": name, "params": params, "token": token} if params else {"command": name, "token": token}
        self._writer.write(encode(json.dumps(payload).encode()))
        try:
            reply = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        except TimeoutError:
            self._replies.pop(token, None)
            self._reply_hooks.pop(token, None)
            raise SoftphoneError(f"baresip did not answer {name!r} within {COMMAND_TIMEOUT_S} s") from None
        data = str(reply.get("data", ""))
        if not reply.get("ok", False):
            raise SoftphoneError(f"baresip refused {name!r}: {data.strip() or 'no reason given'}")
        return data

    async def _on_call(self, call_id: str, name: str, params: str = "") -> str:
        """Select ``call_id`` as baresip's current call, then run a call command."""
        if call_id not in self.calls:
            raise SoftphoneError(f"no call {call_id!r}")
        async with self._command_lock:
            if len(self.calls) > 1 and not call_id.startswith("line:"):
                await self.command("callfind", call_id)
            elif call_id.startswith("line:"):
                await self.command("line", call_id.split(":", 1)[1])
            return await self.command(name, params)

    async def answer(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None or call.state is not CallState.INCOMING:
            raise SoftphoneError(f"no ringing call {call_id!r}")
        await self._on_call(call_id, "accept")

    async def reject(self, call_id: str) -> None:
        await self._on_call(call_id, "hangup")

    async def hangup(self, call_id: str) -> None:
        await self._on_call(call_id, "hangup")

    async def hold(self, call_id: str) -> bool:
        await self._on_call(call_id, "hold")
        return await self._confirm_hold(call_id)

    async def resume(self, call_id: str) -> bool:
        await self._on_call(call_id, "resume")
        return await self._confirm_hold(call_id)

    async def _confirm_hold(self, call_id: str) -> bool:
        before = self.calls[call_id].held if call_id in self.calls else False
        await self.refresh()
        call = self.calls.get(call_id)
        held = bool(call and call.held)
        if held != before:
            kind = EventKind.HELD if held else EventKind.RESUMED
            self.events.put_nowait(SoftphoneEvent(kind, call_id, call.peer if call else ""))
        return held

    async def set_mute(self, call_id: str, muted: bool) -> bool:
        call = self.calls.get(call_id)
        if call is None:
            raise SoftphoneError(f"no call {call_id!r}")
        if call.muted is muted:
            return muted
        # A toggle: its reply is the confirmation of the real state.
        reply = await self._on_call(call_id, "mute")
        confirmed = "un-muted" not in reply
        if "muted" not in reply:
            raise SoftphoneError(f"unexpected mute reply {reply.strip()!r}")
        call.muted = confirmed
        self.events.put_nowait(SoftphoneEvent(EventKind.MUTED if confirmed else EventKind.UNMUTED, call_id, call.peer))
        return confirmed

    def assume_mute(self, call_id: str, muted: bool | None) -> None:
        """Seed the mute state last confirmed before a restart (baresip cannot be asked)."""
        if call_id in self.calls:
            self.calls[call_id].muted = muted

    async def transfer(self, call_id: str, target: str) -> None:
        await self._on_call(call_id, "transfer", target)

    async def dial(self, target: str) -> str:
        async with self._command_lock:
            known = set(self.calls)
            waiter: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._dial_waiter = waiter
            try:
                await self.command("dial", target)
                # The dial reply has no Call-ID: it comes with CALL_RINGING / ESTABLISHED.
                call_id = await asyncio.wait_for(waiter, COMMAND_TIMEOUT_S)
            except TimeoutError:
                raise SoftphoneError(f"no answer from {target} within {COMMAND_TIMEOUT_S} s") from None
            finally:
                self._dial_waiter = None
            assert call_id not in known
            return call_id

    # ------------------------------------------------------------ state

    async def refresh(self, announce: bool = False) -> list[Call]:
        """Re-read baresip's calls (``listcalls``) into ``self.calls``; ``announce`` emits CONNECTED.

        ``listcalls`` names lines, not Call-IDs: a call not known yet is selected with
        ``line N`` and identified by ``callstat`` (its ``id=`` and direction). While a
        CONNECTED snapshot is being built, events are held back and follow it, in order.
        """
        snapshot: list[Call] = []

        def apply(data: str) -> None:
            snapshot.extend(self._apply_listcalls(parse_listcalls(data)))

        if announce:
            self._held = []
        try:
            async with self._command_lock:
                await self.command("listcalls", on_reply=apply)
                for provisional in [call_id for call_id in self.calls if call_id.startswith("line:")]:
                    await self.command("line", provisional.split(":", 1)[1])
                    self._identify(provisional, await self.command("callstat"))
        finally:
            held, self._held = self._held, None
        if announce:
            self.events.put_nowait(SoftphoneEvent(EventKind.CONNECTED, calls=[*snapshot]))
            for event in held or []:
                self.events.put_nowait(event)
        return snapshot

    def _identify(self, provisional: str, callstat: str) -> None:
        found = _CALLSTAT_ID.search(callstat)
        if found is None:
            return  # left to the first event that names it (_adopt_provisional)
        # An event may have named it meanwhile (a hold's SDP answer, an RTCP report).
        call = self.calls.pop(provisional, None) or self.calls.get(found["id"])
        if call is None:
            return  # gone
        call.call_id = found["id"]
        direction = _CALLSTAT_DIRECTION.search(callstat)
        if direction:
            call.direction = "inbound" if direction["dir"] == "Incoming" else "outbound"
        self.calls[call.call_id] = call

    def _apply_listcalls(self, rows: list[tuple[int, str, CallState, bool]]) -> list[Call]:
        by_peer = {call.peer: call for call in self.calls.values()}
        fresh: dict[str, Call] = {}
        for line, peer, state, held in rows:
            known = by_peer.pop(peer, None)
            if known is None:
                call_id = f"line:{line}"
                known = Call(call_id, peer, "inbound" if state is CallState.INCOMING else "outbound", state)
            known.state = state
            known.held = held
            fresh[known.call_id] = known
        self.calls = fresh
        return list(fresh.values())

    async def _resync(self) -> None:
        await self.refresh(announce=True)

    def _on_event(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        call_id = str(message.get("id", ""))
        peer = str(message.get("peeruri", ""))
        direction = "inbound" if message.get("direction") == "incoming" else "outbound"
        if call_id and peer:
            self._adopt_provisional(call_id, peer, direction if "direction" in message else None)
        if kind == "CALL_INCOMING":
            self.calls[call_id] = Call(call_id, peer, "inbound", CallState.INCOMING)
            self._emit(EventKind.INCOMING, call_id, peer, direction)
        elif kind == "CALL_RINGING":
            self.calls.setdefault(call_id, Call(call_id, peer, "outbound", CallState.OUTGOING))
            self._dial_answered(call_id)
            self._emit(EventKind.RINGING, call_id, peer, direction)
        elif kind == "CALL_ESTABLISHED":
            call = self.calls.setdefault(call_id, Call(call_id, peer, direction, CallState.ESTABLISHED))
            call.state = CallState.ESTABLISHED
            call.muted = False if call.muted is None else call.muted  # a new call starts un-muted
            self._dial_answered(call_id)
            self._emit(EventKind.ESTABLISHED, call_id, peer, direction)
        elif kind == "CALL_CLOSED":
            self.calls.pop(call_id, None)
            self._emit(EventKind.CLOSED, call_id, peer, direction, str(message.get("param", "")))
        elif not isinstance(kind, str):
            self.protocol_errors += 1
            log.error("baresip event without a type: %.120r", message)
        # Other event types (RTCP, SDP, registration, ...) carry nothing the daemon needs.

    def _dial_answered(self, call_id: str) -> None:
        if self._dial_waiter is not None and not self._dial_waiter.done():
            self._dial_waiter.set_result(call_id)

    def _adopt_provisional(self, call_id: str, peer: str, direction: str | None) -> None:
        # A call known only by its line after a reconnect takes its real Call-ID (and
        # direction: listcalls only guessed it) from the first event that names it; RTCP
        # reports arrive every few seconds, so this also covers a callstat that gave no id.
        if call_id in self.calls:
            return
        for provisional, call in list(self.calls.items()):
            if provisional.startswith("line:") and call.peer == peer:
                del self.calls[provisional]
                call.call_id = call_id
                call.direction = direction or call.direction
                self.calls[call_id] = call
                return

    def _emit(self, kind: EventKind, call_id: str, peer: str, direction: str, reason: str = "") -> None:
        event = SoftphoneEvent(kind, call_id, peer, direction, reason)
        if self._held is not None:
            self._held.append(event)
        else:
            self.events.put_nowait(event)
