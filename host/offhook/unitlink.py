"""One desk unit over a transport: the host's end of the link protocol, for the daemon and the fleet tools.

``connect()`` resynchronises from scratch (firmware/PROTOCOL.md): a lone 0x00 ends any half-sent
frame, the host says HELLO, the unit answers with its HELLO (firmware version, board, serial
number, capabilities). ``run()`` then reads, ACKs and retransmits, and hands what the unit sends
to one handler, in arrival order: a ButtonEvent, HidLeds, a UnitInfo (the unit said HELLO again:
it reset) or the Frame itself (CONFIG, UPDATE_STATUS, NACK, LOG...). A unit that stops ACKing, a
transport error and too many unacknowledged frames end ``run()`` with UnitLost.

Every write goes through one lock that takes the link's output and writes it as one step, so
frames from concurrent senders never interleave or overtake each other, whatever the transport.
A sender writes its own frames (and waits its turn); run()'s ACKs and retransmissions go to a
writer task of its own, so reading never waits behind a port that a sender's window keeps full.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from offhook import __version__
from offhook import linkproto as L
from offhook.transport.base import Transport, TransportClosed

log = logging.getLogger(__name__)

POLL_S = 0.1  # the longest a waiter sleeps before it looks again (its deadline, a HELLO to repeat)
UNIT_MESSAGES_KEPT = 64  # Inbox.frames holds at most this many (the oldest are dropped)


class UnitLost(ConnectionError):
    """The unit stopped answering, reset, or its transport closed."""


def host_hello() -> bytes:
    """The host's HELLO payload (PROTOCOL.md)."""
    return L.encode_json({"proto": L.PROTOCOL_VERSION, "host": __version__})


@dataclass
class UnitInfo:
    """A unit as its HELLO describes it (PROTOCOL.md), and where it was reached; ``error`` says why
    it could not be asked (`offhook devices`)."""

    path: str = ""
    transport: str = "serial"  # how it is reachable: "serial", "hid", "serial+hid"
    serial: str = ""
    board: str = ""
    fw: str = ""
    slot: str = ""
    health: str = ""  # "trial", "confirmed", "safe"; "" from firmware without A/B slots
    safe_mode: bool = False
    error: str = ""
    hid_path: str = ""  # its HID vendor interface too (transport "serial+hid")
    proto: int = 0
    caps: list[str] = field(default_factory=list)
    boot: str = ""  # why the boot loader chose what it runs, e.g. "rolled back from slot a: ..."
    hello: dict[str, Any] = field(default_factory=dict, repr=False)  # as received: API clients get it whole

    ROW = ("path", "transport", "serial", "board", "fw", "slot", "health", "safe_mode", "error", "hid_path")

    @classmethod
    def from_hello(cls, hello: dict[str, Any], path: str = "", transport: str = "serial") -> UnitInfo:
        caps, proto = hello.get("caps"), hello.get("proto")
        return cls(
            path=path,
            transport=transport,
            serial=str(hello.get("serial", "")),
            board=str(hello.get("board", "")),
            fw=str(hello.get("fw", "")),
            slot=str(hello.get("slot", "")),
            health=str(hello.get("health", "")),
            safe_mode=bool(hello.get("safe_mode", False)),
            proto=proto if type(proto) is int else 0,
            caps=[str(c) for c in caps] if isinstance(caps, list) else [],
            boot=str(hello.get("boot", "")),
            hello=hello,
        )

    @property
    def firmware(self) -> str:
        """``fw`` by the name the daemon's tests and scripts know."""
        return self.fw

    def row(self) -> dict[str, Any]:
        """The `offhook devices --json` row."""
        return {name: getattr(self, name) for name in self.ROW}


@dataclass(frozen=True)
class ButtonEvent:
    button: int
    gesture: int
    unit_ms: int
    received: float  # host monotonic seconds


@dataclass(frozen=True)
class HidLeds:
    bits: int  # the HID_LED_* a HID softphone set on the unit


Message = ButtonEvent | HidLeds | UnitInfo | L.Frame
Handler = Callable[[Message], Awaitable[None] | None]


def log_frame(frame: L.Frame, who: str) -> None:
    """Log a unit's LOG line at its level, and a NACK (it refused one of our frames) as a warning."""
    try:
        if frame.type == L.LOG:
            level, text = L.decode_log(frame.payload) if frame.payload else (L.LOG_INFO, "")
            log.log(level, "unit %s: %s", who, text)
        elif frame.type == L.NACK:
            seq, code, reason = L.decode_nack(frame.payload)
            log.warning("unit refused frame %d (%s): %s", seq, L.ERROR_NAMES.get(code, code), reason)
    except ValueError:
        pass


class Inbox:
    """The default handler: keeps what arrives for a reader that asks (tests, scripts). Presses and
    HID LEDs queue in order, ``resync`` is set by a HELLO after the first, and the other frames
    keep only the newest UNIT_MESSAGES_KEPT, since nobody may be reading them; LOG and NACK are
    also logged."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[ButtonEvent] = asyncio.Queue()
        self.hid_leds: asyncio.Queue[int] = asyncio.Queue()
        self.resync = asyncio.Event()
        self.frames: asyncio.Queue[L.Frame] = asyncio.Queue(UNIT_MESSAGES_KEPT)

    def __call__(self, message: Message) -> None:
        if isinstance(message, ButtonEvent):
            self.events.put_nowait(message)
        elif isinstance(message, HidLeds):
            self.hid_leds.put_nowait(message.bits)
        elif isinstance(message, UnitInfo):
            self.resync.set()
        else:
            log_frame(message, "?")
            if self.frames.full():
                self.frames.get_nowait()
            self.frames.put_nowait(message)


class UnitLink:
    """The host's one driver for a unit: HELLO exchange, reliable sends, one handler for what arrives.

    ``handler`` runs inside ``run()`` (or ``_pump``), one message at a time, after the batch's ACKs
    are queued for writing; a coroutine is awaited there, so it must not wait for the unit itself.
    Messages that arrive during ``connect()`` are handed over when ``run()`` starts.
    """

    def __init__(
        self,
        transport: Transport,
        clock: Callable[[], float] = time.monotonic,
        handler: Handler | None = None,
        *,
        retry_ms: int = 250,
        max_tries: int = 5,
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.link = L.Link(retry_ms=retry_ms, max_tries=max_tries)
        self.handler: Handler = handler if handler is not None else Inbox()
        self.info: UnitInfo | None = None
        self._write_lock = asyncio.Lock()
        self._sent = asyncio.Event()  # wakes run() when the first reliable frame in flight needs a retry timer
        self._changed = asyncio.Event()  # run() handled a batch: waiters look again
        self._queued = asyncio.Event()  # run() has bytes for its writer
        self._unwritten = b""  # run()'s output, taken from the link, for the next flush
        self._received: deque[Message] = deque()  # decoded, not yet handed to the handler
        self._answered: set[int] = set()  # seqs NACKed since the last look at failed frames
        self._greeting = False  # hello() is waiting: HELLOs are its answers, not a reset
        self._hello_failed = False
        self._running = False
        self._lost: Exception | None = None  # what ended run(): its waiters raise it too

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ------------------------------------------------------------ HELLO

    async def connect(self, timeout: float = 3.0) -> UnitInfo:
        """Open the transport, end any half-sent frame and exchange HELLOs (``hello``)."""
        await self.transport.open()
        try:
            await self.flush(b"\x00")
            return await self.hello(timeout)
        except UnitLost:
            self.transport.close()
            raise

    async def hello(self, timeout: float) -> UnitInfo:
        """Say HELLO and wait for the unit's answer; raises UnitLost if none comes within ``timeout``.

        Only a unit HELLO that follows the ACK of ours counts. One that crossed ours (the unit's
        boot or "no host" HELLO) is no answer: a frame sent then could overtake our HELLO's
        retransmission, and the unit would take that late HELLO as a host restart (a STATE
        blanked, an update's chunks refused). A unit still booting may miss our HELLO's retries:
        we ask again until ``timeout``. Works before ``run()`` and while it runs.
        """
        self._greeting, self._hello_failed = True, False
        self.info = None  # only the answer to this HELLO counts, not one seen before it
        try:
            seq = await self.send(L.HELLO, host_hello())
            deadline = self.clock() + timeout
            while True:
                if self._hello_failed:
                    self._hello_failed = False
                    seq = await self.send(L.HELLO, host_hello())
                if self.link.in_flight(seq):
                    self.info = None  # a HELLO that crossed ours: wait for the answer to ours
                elif self.info is not None:
                    return self.info
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise UnitLost(f"no HELLO from {self.transport.path} within {timeout} s")
                await self._step(min(remaining, POLL_S))
        finally:
            self._greeting = False

    # ------------------------------------------------------------ sending

    async def send(self, mtype: int, payload: bytes = b"") -> int:
        seq = self.queue(mtype, payload)
        await self.flush()
        return seq

    async def send_state(self, call: int, agent: int, flags: int, timer_s: int) -> None:
        await self.send(L.STATE, L.encode_state(call, agent, flags, timer_s))

    def queue(self, mtype: int, payload: bytes = b"") -> int:
        """Queue a frame, written by the next ``flush``: a caller can note its seq before the
        unit's answer to it can arrive."""
        if not self.link.pending:
            self._sent.set()  # run() sleeps without a retry timer: give it one
        try:
            return self.link.send(mtype, payload, self._now_ms())
        except ValueError as exc:  # too many unacknowledged frames: the unit is not keeping up
            raise UnitLost(f"{self.transport.path}: {exc}") from None

    async def flush(self, prefix: bytes = b"") -> None:
        """Write what the link has queued. The lock's holder takes the output and writes it, again
        while more is queued, so bytes keep their order; a sender waits its turn (backpressure)."""
        async with self._write_lock:
            out = prefix + self._take_output()
            while out:
                try:
                    await self.transport.write(out)
                except TransportClosed as exc:
                    raise UnitLost(str(exc)) from None
                out = self._take_output()

    def _take_output(self) -> bytes:
        out, self._unwritten = self._unwritten + self.link.take_output(), b""
        return out

    # ------------------------------------------------------------ receiving

    async def run(self) -> None:
        """Read, hand over and retransmit until the unit is lost (raises UnitLost).

        Sleeps until bytes arrive or a retransmission is due: an idle link costs no wake-ups.
        """
        self._running, self._lost = True, None
        reader = asyncio.create_task(self.transport.read())
        writer = asyncio.create_task(self._write_queued())
        try:
            await self._deliver()  # what arrived during connect()
            while True:
                due_ms = self.link.next_retry_ms(self._now_ms())
                self._sent.clear()
                woken = asyncio.create_task(self._sent.wait())
                done, _ = await asyncio.wait(
                    {reader, woken, writer},
                    timeout=None if due_ms is None else due_ms / 1000 + 0.001,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
                if writer in done:
                    writer.result()  # a write failed: UnitLost
                # All that was read already goes in before retries are looked at: after a slow turn
                # of the event loop, the ACKs in that backlog are not late.
                while reader.done():
                    try:
                        self._receive(reader.result())
                    except TransportClosed as exc:
                        raise UnitLost(str(exc)) from None
                    # Handed over before anything else runs: a waiter whose timeout falls in the
                    # next yield must not see a NACKed frame gone from ``link.pending`` while its
                    # handler has not yet heard the NACK (a flasher would take it as delivered).
                    await self._deliver()
                    reader = asyncio.create_task(self.transport.read())
                    await asyncio.sleep(0)  # the new read is done at once if more is queued
                await self._process()
                await self._deliver()
                self._changed.set()
        except Exception as exc:
            self._lost = exc
            raise
        finally:
            self._running = False
            self._changed.set()
            reader.cancel()
            writer.cancel()

    async def _write_queued(self) -> None:
        """run()'s writer: its ACKs and retransmissions go out without holding up its reading (a
        sender's window may keep a slow port's buffer full)."""
        while True:
            await self._queued.wait()
            self._queued.clear()
            await self.flush()

    @contextlib.asynccontextmanager
    async def running(self, settle_s: float = 0.0) -> AsyncIterator[UnitLink]:
        """``run()`` in the background for the block. On the way out, frames still unacknowledged
        get up to ``settle_s`` to be ACKed: arriving after the next session's HELLO they would reuse
        its sequence numbers (a refused update's chunks, say)."""
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            if settle_s:
                with contextlib.suppress(UnitLost):
                    await self.until(lambda: not self.link.pending, settle_s)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, UnitLost):
                await task

    async def until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds, looked at again after each batch from the unit; False
        if ``timeout`` passes first. Raises UnitLost if the link ends meanwhile."""
        deadline = self.clock() + timeout
        while not condition():
            remaining = deadline - self.clock()
            if remaining <= 0:
                return False
            await self._step(min(remaining, POLL_S))
        return True

    async def _step(self, wait_s: float) -> None:
        """Up to ``wait_s`` for the unit: run() reads when it runs, else this does (connect()).
        What ended run() ends its waiters too, before and after they wait."""
        if self._lost is None and not self._running:
            await self._read(wait_s)
            return
        if self._lost is None:
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait_s)
        if self._lost is not None:
            raise self._lost

    async def _read(self, wait_s: float) -> None:
        try:
            data = await asyncio.wait_for(self.transport.read(), wait_s)
        except TimeoutError:
            data = b""
        except TransportClosed as exc:
            raise UnitLost(str(exc)) from None
        await self._process(data)

    async def _pump(self, wait_s: float) -> None:
        """One read of up to ``wait_s``, handed over: for a caller that drives the link without run()."""
        await self._read(wait_s)
        await self._deliver()

    def _receive(self, data: bytes) -> None:
        now_ms = self._now_ms()
        for item in self.link.receive(data, now_ms):
            if isinstance(item, L.Frame) and item.type == L.NACK and len(item.payload) >= 3:
                self._answered.add(L.decode_nack(item.payload)[0])
            self._handle(item, now_ms)

    async def _process(self, data: bytes = b"") -> None:
        """Take ``data`` in, then retransmit what is due and give up on what never got an answer."""
        if data:
            self._receive(data)
        self.link.poll(self._now_ms())
        # A NACKed frame was answered (refused), not lost: the handler hears the refusal.
        failed = [(seq, mtype) for seq, mtype in self.link.take_failed() if seq not in self._answered]
        self._answered.clear()
        if self._greeting and failed and all(mtype == L.HELLO for _, mtype in failed):
            self._hello_failed = True  # hello() asks again until its own deadline
            failed = []
        if failed:
            names = ", ".join(L.MESSAGE_NAMES.get(t, str(t)) for _, t in failed)
            raise UnitLost(f"{self.transport.path} did not acknowledge {names}")
        self._unwritten += self.link.take_output()
        if self._unwritten and self._running:
            self._queued.set()
        elif self._unwritten:
            await self.flush()

    def _handle(self, item: L.Frame | L.DecodeError, now_ms: int) -> None:
        if isinstance(item, L.DecodeError):
            log.debug("unit %s: dropped frame: %r", self.transport.path, item)
            return
        if item.type == L.HELLO:
            hello = self._decoded(item, L.decode_json)
            if hello is None:
                return
            info = UnitInfo.from_hello(hello, self.transport.path, self.transport.kind or "serial")
            if self.info is not None and not self._greeting:
                log.info("unit %s said HELLO again: resynchronising", self.info.serial)
                self._received.append(info)
            self.info = info
        elif item.type == L.EVENT:
            event = self._decoded(item, L.decode_event)
            if event is not None:
                button, gesture, unit_ms = event
                self._received.append(ButtonEvent(button, gesture, unit_ms, self.clock()))
        elif item.type == L.HID_LEDS:
            leds = self._decoded(item, L.decode_hid_leds)
            if leds is not None:
                self._received.append(HidLeds(leds))
        elif item.type == L.PING:
            self.link.send(L.PONG, item.payload, now_ms)
        else:
            self._received.append(item)

    def _decoded(self, frame: L.Frame, decode: Callable[[bytes], Any]) -> Any:
        """The frame's payload decoded, or None after NACKing a malformed one."""
        try:
            return decode(frame.payload)
        except ValueError as exc:
            self.link.nack(frame, L.ERR_BAD_PAYLOAD, str(exc))
            return None

    async def _deliver(self) -> None:
        while self._received:
            result = self.handler(self._received.popleft())
            if inspect.isawaitable(result):
                await result

    def close(self) -> None:
        self.transport.close()
