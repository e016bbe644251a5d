"""A web softphone (a contact-centre platform's browser phone) as the softphone, through the API.

The page connects to the local API, authenticates, and sends
``{"type": "register_softphone"}``. From then on it reports its calls
(``softphone_event``: incoming, ringing, established, held, resumed, closed, muted,
unmuted) and answers the daemon's requests (``request`` → ``reply``). These are the
moments web softphones already exchange with vendor headsets: device answered,
rejected, ended, mute changed, hold changed. See docs/api.md.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Protocol

from offhook.softphone.base import (
    Call,
    CallState,
    EventKind,
    Softphone,
    SoftphoneError,
    SoftphoneEvent,
    SoftphoneUnavailable,
)


class PageClient(Protocol):
    """The page's connection as the API server holds it: its name, and a way to send it a message."""

    name: str

    def post(self, message: dict[str, Any]) -> None: ...


REQUEST_TIMEOUT_S = 3.0
_STATE_FOR = {
    EventKind.INCOMING: CallState.INCOMING,
    EventKind.RINGING: CallState.OUTGOING,
    EventKind.ESTABLISHED: CallState.ESTABLISHED,
}


class WebSoftphone(Softphone):
    has_attended_transfer = False
    announces_calls = False  # no page registered: no web call exists, so the unit may show idle

    def __init__(self) -> None:
        super().__init__()
        self.client: PageClient | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.detach(self.client)

    # ------------------------------------------------------------ from the page

    def register(self, client: PageClient) -> None:
        if self.client is not None and self.client is not client:
            raise SoftphoneError(f"a web softphone is already registered ({self.client.name})")
        self.client = client
        self.calls = {}
        self.events.put_nowait(SoftphoneEvent(EventKind.CONNECTED, calls=[]))

    def detach(self, client: PageClient | None) -> None:
        if client is None or client is not self.client:
            return
        self.client = None
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(SoftphoneUnavailable("the web softphone disconnected"))
        self._waiting.clear()
        self.events.put_nowait(SoftphoneEvent(EventKind.DISCONNECTED, reason="web softphone disconnected"))

    def report(self, message: dict[str, Any]) -> None:
        """A ``softphone_event`` from the page; raises ValueError if malformed."""
        try:
            kind = EventKind(str(message.get("event")))
        except ValueError:
            names = ", ".join(k.value for k in EventKind if k not in (EventKind.CONNECTED, EventKind.DISCONNECTED))
            raise ValueError(f"unknown softphone event {message.get('event')!r} (known: {names})") from None
        call_id = str(message.get("call", ""))
        if not call_id and kind not in (EventKind.MUTED, EventKind.UNMUTED):
            raise ValueError("a call event needs 'call'")
        peer = str(message.get("peer", ""))
        direction = "outbound" if message.get("direction") == "outbound" else "inbound"
        if kind in _STATE_FOR:
            call = self.calls.setdefault(call_id, Call(call_id, peer, direction, _STATE_FOR[kind]))
            call.state = _STATE_FOR[kind]
        elif kind is EventKind.CLOSED:
            self.calls.pop(call_id, None)
        elif kind in (EventKind.HELD, EventKind.RESUMED) and call_id in self.calls:
            self.calls[call_id].held = kind is EventKind.HELD
        self.events.put_nowait(SoftphoneEvent(kind, call_id, peer, direction, str(message.get("reason", ""))))

    def reply(self, message: dict[str, Any]) -> None:
        future = self._waiting.pop(int(message.get("request", -1)), None)
        if future is None or future.done():
            return
        if message.get("ok"):
            future.set_result(message.get("result"))
        else:
            future.set_exception(SoftphoneError(f"web softphone: {message.get('error', 'refused')}"))

    # ------------------------------------------------------------ to the page

    async def _ask(self, op: str, call_id: str = "", **fields: Any) -> Any:
        if self.client is None:
            raise SoftphoneUnavailable("no web softphone is registered")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self.client.post({"type": "request", "request": request_id, "op": op, "call": call_id, **fields})
        try:
            return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)
        except TimeoutError:
            self._waiting.pop(request_id, None)
            raise SoftphoneError(f"the web softphone did not answer {op!r} within {REQUEST_TIMEOUT_S} s") from None

    async def answer(self, call_id: str) -> None:
        await self._ask("answer", call_id)

    async def reject(self, call_id: str) -> None:
        await self._ask("reject", call_id)

    async def hangup(self, call_id: str) -> None:
        await self._ask("hangup", call_id)

    async def hold(self, call_id: str) -> bool:
        return bool(await self._ask("hold", call_id))

    async def resume(self, call_id: str) -> bool:
        return bool(await self._ask("resume", call_id))

    async def set_mute(self, call_id: str, muted: bool) -> bool:
        return bool(await self._ask("mute", call_id, muted=muted))

    async def transfer(self, call_id: str, target: str) -> None:
        await self._ask("transfer", call_id, target=target)

    async def dial(self, target: str) -> str:
        return str(await self._ask("dial", target=target))
