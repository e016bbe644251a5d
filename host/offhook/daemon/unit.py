"""One connected desk unit: the link protocol spoken over a transport.

Opening a session resynchronises from scratch (see firmware/PROTOCOL.md): a lone
0x00 ends any half-sent frame, the host says HELLO, the unit answers with its
HELLO (firmware version, board, serial number, capabilities), then the daemon
sends the full STATE. A unit that stops ACKing, a unit that says HELLO again (it
reset) and a transport error all end the session; the daemon opens a new one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from offhook import __version__
from offhook import linkproto as L
from offhook.transport.base import Transport, TransportClosed

log = logging.getLogger(__name__)

POLL_S = 0.02  # how often connect() checks for the unit's HELLO
UNIT_MESSAGES_KEPT = 64  # unit_messages holds at most this many (the oldest are dropped)


class UnitLost(ConnectionError):
    """The unit stopped answering, reset, or its transport closed."""


@dataclass
class UnitInfo:
    serial: str
    board: str
    firmware: str
    proto: int
    caps: list[str] = field(default_factory=list)
    hello: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_hello(cls, hello: dict[str, Any]) -> UnitInfo:
        caps = hello.get("caps", [])
        return cls(
            serial=str(hello.get("serial", "")),
            board=str(hello.get("board", "")),
            firmware=str(hello.get("fw", "")),
            proto=int(hello.get("proto", 0)),
            caps=[str(c) for c in caps] if isinstance(caps, list) else [],
            hello=hello,
        )


@dataclass(frozen=True)
class ButtonEvent:
    button: int
    gesture: int
    unit_ms: int
    received: float  # host monotonic seconds


class UnitSession:
    def __init__(self, transport: Transport, clock: Callable[[], float] = time.monotonic) -> None:
        self.transport = transport
        self.clock = clock
        self.link = L.Link()
        self.info: UnitInfo | None = None
        self.events: asyncio.Queue[ButtonEvent] = asyncio.Queue()
        self.hid_leds: asyncio.Queue[int] = asyncio.Queue()  # HID_LED_* bits a HID softphone set
        # CONFIG, UPDATE_STATUS, NACK...: for a reader that asks for them. The daemon never reads
        # them, so the queue is bounded and keeps the newest: a long session must not grow it.
        self.unit_messages: asyncio.Queue[L.Frame] = asyncio.Queue(UNIT_MESSAGES_KEPT)
        self.resync = asyncio.Event()  # the unit said HELLO again: send it the full state
        self._sent = asyncio.Event()  # wakes run() when a new reliable frame needs its retry timer
        self._connecting = False
        self._hello_failed = False

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    async def connect(self, timeout: float = 3.0) -> UnitInfo:
        """Open the transport and exchange HELLOs; raises UnitLost if the unit does not answer.

        Only a unit HELLO that follows the ACK of ours counts. One that crossed ours (the unit's
        boot or "no host" HELLO) is no answer: a STATE sent then could overtake our HELLO's
        retransmission, and the unit would take that late HELLO as a host restart and blank
        the STATE. A unit still booting may miss our HELLO's retries: we ask again until
        ``timeout``.
        """
        await self.transport.open()
        await self.transport.write(b"\x00")
        self._connecting = True
        try:
            hello_seq = self._send_hello()
            await self._flush()
            deadline = self.clock() + timeout
            while True:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    self.transport.close()
                    raise UnitLost(f"no HELLO from {self.transport.path} within {timeout} s")
                await self._pump(min(remaining, POLL_S * 5))
                if self._hello_failed:
                    self._hello_failed = False
                    hello_seq = self._send_hello()
                    await self._flush()
                if any(entry.seq == hello_seq for entry in self.link._pending):
                    self.info = None  # a HELLO that crossed ours: wait for the answer to ours
                elif self.info is not None:
                    self.resync.clear()  # the full STATE follows connect() anyway
                    return self.info
        finally:
            self._connecting = False

    def _send_hello(self) -> int:
        hello = L.encode_json({"proto": L.PROTOCOL_VERSION, "host": __version__})
        return self.link.send(L.HELLO, hello, self._now_ms())

    async def send_state(self, call: int, agent: int, flags: int, timer_s: int) -> None:
        self._send(L.STATE, L.encode_state(call, agent, flags, timer_s))
        await self._flush()

    async def send(self, mtype: int, payload: bytes = b"") -> int:
        seq = self._send(mtype, payload)
        await self._flush()
        return seq

    def _send(self, mtype: int, payload: bytes) -> int:
        self._sent.set()
        try:
            return self.link.send(mtype, payload, self._now_ms())
        except ValueError as exc:  # too many unacknowledged frames: the unit is not keeping up
            raise UnitLost(f"{self.transport.path}: {exc}") from None

    async def run(self) -> None:
        """Read and retransmit until the unit is lost (raises UnitLost).

        Sleeps until bytes arrive or a retransmission is due: an idle link costs no
        wake-ups at all.
        """
        reader = asyncio.create_task(self.transport.read())
        try:
            while True:
                due_ms = self.link.next_retry_ms(self._now_ms())
                self._sent.clear()
                woken = asyncio.create_task(self._sent.wait())
                done, _ = await asyncio.wait(
                    {reader, woken},
                    timeout=None if due_ms is None else due_ms / 1000 + 0.001,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
                data = b""
                if reader in done:
                    try:
                        data = reader.result()
                    except TransportClosed as exc:
                        raise UnitLost(str(exc)) from None
                    reader = asyncio.create_task(self.transport.read())
                await self._process(data)
        finally:
            reader.cancel()

    async def _pump(self, wait_s: float) -> None:
        try:
            data = await asyncio.wait_for(self.transport.read(), wait_s)
        except TimeoutError:
            data = b""
        except TransportClosed as exc:
            raise UnitLost(str(exc)) from None
        await self._process(data)

    async def _process(self, data: bytes) -> None:
        now_ms = self._now_ms()
        if data:
            for item in self.link.receive(data, now_ms):
                self._handle(item)
        self.link.poll(now_ms)
        failed = self.link.take_failed()
        if self._connecting and failed and all(mtype == L.HELLO for _, mtype in failed):
            self._hello_failed = True  # connect() asks again until its own deadline
            failed = []
        if failed:
            names = ", ".join(L.MESSAGE_NAMES.get(t, str(t)) for _, t in failed)
            raise UnitLost(f"{self.transport.path} did not acknowledge {names}")
        await self._flush()

    async def _flush(self) -> None:
        out = self.link.take_output()
        if out:
            try:
                await self.transport.write(out)
            except TransportClosed as exc:
                raise UnitLost(str(exc)) from None

    def _handle(self, item: L.Frame | L.DecodeError) -> None:
        if isinstance(item, L.DecodeError):
            log.debug("unit %s: dropped frame: %r", self.transport.path, item)
            return
        if item.type == L.HELLO:
            hello = self._decoded(item, L.decode_json)
            if hello is None:
                return
            if self.info is not None:
                log.info("unit %s said HELLO again: resynchronising", self.info.serial)
                self.resync.set()
            self.info = UnitInfo.from_hello(hello)
        elif item.type == L.EVENT:
            event = self._decoded(item, L.decode_event)
            if event is None:
                return
            button, gesture, unit_ms = event
            self.events.put_nowait(ButtonEvent(button, gesture, unit_ms, self.clock()))
        elif item.type == L.HID_LEDS:
            leds = self._decoded(item, L.decode_hid_leds)
            if leds is not None:
                self.hid_leds.put_nowait(leds)
        elif item.type == L.LOG:
            level, text = L.decode_log(item.payload) if item.payload else (L.LOG_INFO, "")
            log.log(level, "unit %s: %s", self.info.serial if self.info else self.transport.path, text)
        elif item.type == L.PING:
            self.link.send(L.PONG, item.payload, self._now_ms())
        elif item.type == L.NACK:
            seq, code, reason = L.decode_nack(item.payload)
            log.warning("unit refused frame %d (%s): %s", seq, L.ERROR_NAMES.get(code, code), reason)
            self._keep(item)
        else:
            self._keep(item)

    def _decoded(self, frame: L.Frame, decode: Callable[[bytes], Any]) -> Any:
        """The frame's payload decoded, or None after NACKing a malformed one."""
        try:
            return decode(frame.payload)
        except ValueError as exc:
            self.link.nack(frame, L.ERR_BAD_PAYLOAD, str(exc))
            return None

    def _keep(self, frame: L.Frame) -> None:
        if self.unit_messages.full():
            self.unit_messages.get_nowait()  # the oldest goes: nobody may be reading
        self.unit_messages.put_nowait(frame)

    def close(self) -> None:
        self.transport.close()
