"""A scripted unit that takes updates, in memory (no VM, no pty): the shared link code on its side,
an in-memory transport on the host's, so the flasher's state machine can be driven through lost
chunks, crossed HELLOs and both ways of saying where to resume, in a few seconds. What the host
sends reaches the unit at once; what the unit sends waits in the Wire for the host's reads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from offhook import linkproto as L
from offhook.transport.base import Transport, TransportClosed

BOARD = "pico"


class Wire(Transport):
    """The host's end: what the unit writes queues here; what the host writes goes to the unit."""

    kind = "serial"

    def __init__(self, unit: ScriptedUnit) -> None:
        super().__init__(unit.path)
        self.unit = unit
        self.rx: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    async def open(self) -> None:
        self.unit.attach(self)

    async def read(self) -> bytes:
        data = await self.rx.get()
        if data is None:
            self.rx.put_nowait(None)
            raise TransportClosed(f"{self.path} closed")
        return data

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise TransportClosed(f"{self.path} is not open")
        self.unit.feed(data)
        await asyncio.sleep(0.005)  # like a port's write, done in a thread: the unit may answer meanwhile

    def close(self) -> None:
        self.closed = True
        self.rx.put_nowait(None)
        self.unit.detach(self)


class ScriptedUnit:
    """``resume``: it has RESUME_CAP and says where to resume in UPDATE_STATUS (its NACK text then
    is not the old "expected offset N", so a host that parsed it would fail). ``lose_chunk_at``:
    the first UPDATE_CHUNK at that offset never arrives. ``boot_deaf_s``: the first host HELLO finds
    it booting: it says its boot HELLO and hears nothing for that long. ``refuse_at``: it refuses the
    chunk at that offset (a bad file). ``resume_lost``: its first "resume" UPDATE_STATUS never
    leaves it (its send window was full: the firmware drops a status then), so only the NACK
    arrives. ``rolls_back``: the new version crashes at boot. ``deaf_from``: from the first frame
    of that type on, it hears nothing."""

    def __init__(
        self,
        fw: str = "1.0.0",
        *,
        resume: bool = True,
        lose_chunk_at: int | None = None,
        boot_deaf_s: float = 0.0,
        refuse_at: int | None = None,
        resume_lost: bool = False,
        rolls_back: bool = False,
        boot_hello: dict[str, Any] | None = None,
        deaf_from: int | None = None,
    ) -> None:
        self.serial = "00000000000c0ffe"
        self.path = "mem:" + self.serial
        self.fw = fw
        self.health = "confirmed"
        self.resume = resume
        self.lose_chunk_at = lose_chunk_at
        self.boot_deaf_s = boot_deaf_s
        self.refuse_at = refuse_at
        self.resume_lost = resume_lost
        self.rolls_back = rolls_back
        self.boot_hello = boot_hello or {}  # what its boot HELLO says otherwise (e.g. a health since changed)
        self.deaf_from = deaf_from  # a frame type from which on it hears nothing (a unit that hung)
        self.link = L.Link(retry_ms=250, max_tries=4)
        self.heard: list[L.Frame] = []  # frames accepted, in order
        self.deaf_until = 0.0
        self.received = bytearray()
        self.size = 0
        self.version = ""
        self.nacks: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self._wire: Wire | None = None
        self._poller: asyncio.Task[None] | None = None
        self._later: set[asyncio.Task[None]] = set()

    # ------------------------------------------------ the wire

    def attach(self, wire: Wire) -> None:
        self._wire = wire
        self._poller = asyncio.create_task(self._poll())

    def detach(self, wire: Wire) -> None:
        if self._wire is wire:
            self._wire = None
            for task in [self._poller, *self._later]:
                if task is not None:
                    task.cancel()

    def _now(self) -> int:
        return int(time.monotonic() * 1000)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            self.link.poll(self._now())
            self.link.take_failed()
            self._flush()

    def _flush(self) -> None:
        out = self.link.take_output()
        if out and self._wire is not None:
            self._wire.rx.put_nowait(out)

    def feed(self, data: bytes) -> None:
        if time.monotonic() < self.deaf_until:
            return
        for encoded in data.split(b"\x00"):
            frame = L.parse_body(encoded) if encoded else None
            if isinstance(frame, L.Frame) and frame.type == L.HELLO and self.boot_deaf_s:
                # Booting: the host's HELLO is lost, the boot HELLO crosses it, and then nothing is heard.
                self.deaf_until, self.boot_deaf_s = time.monotonic() + self.boot_deaf_s, 0.0
                self.link.reset()
                self._send(L.HELLO, L.encode_json({**self.hello(), **self.boot_hello}))
                break
            if isinstance(frame, L.Frame) and frame.type == self.deaf_from:
                self.deaf_until = float("inf")
                return
            if isinstance(frame, L.Frame) and frame.type == L.UPDATE_CHUNK:
                offset = L.decode_chunk(frame.payload)[0]
                if offset == self.lose_chunk_at:
                    self.lose_chunk_at = None
                    continue  # lost on the way: neither ACKed nor seen
            for item in self.link.receive(encoded + b"\x00", self._now()):
                if isinstance(item, L.Frame):
                    self.heard.append(item)
                    self._handle(item)
        self._flush()

    # ------------------------------------------------ the unit

    def hello(self) -> dict[str, Any]:
        caps = ["pwm", "update_resume"] if self.resume else ["pwm"]
        hello = {"proto": 1, "fw": self.fw, "board": BOARD, "serial": self.serial, "caps": caps}
        return {**hello, "slot": "a", "health": self.health}

    def _send(self, mtype: int, payload: bytes = b"") -> None:
        self.link.send(mtype, payload, self._now())

    def _status(self, status: dict[str, Any]) -> None:
        self.statuses.append(status)
        self._send(L.UPDATE_STATUS, L.encode_json(status))

    def _refuse(self, frame: L.Frame, reason: str) -> None:
        self.nacks.append(reason)
        self.link.nack(frame, L.ERR_REFUSED, reason)

    def _handle(self, frame: L.Frame) -> None:
        if frame.type == L.HELLO:
            self._flush()  # the ACK, before the session restarts
            self.link.reset()
            self._send(L.HELLO, L.encode_json(self.hello()))
        elif frame.type == L.UPDATE_BEGIN:
            meta = L.decode_json(frame.payload)
            self.size, self.version, self.received = int(meta["size"]), str(meta["version"]), bytearray()
            self._status({"phase": "receiving", "progress": 0})
        elif frame.type == L.UPDATE_CHUNK:
            offset, data = L.decode_chunk(frame.payload)
            have = len(self.received)
            if offset == self.refuse_at:
                self._status({"phase": "failed", "result": "rejected", "reason": "sha256 mismatch in /app.mpy"})
                self._refuse(frame, "sha256 mismatch in /app.mpy")
            elif offset > have:  # one was lost: where to resume
                if self.resume:
                    if self.resume_lost:
                        self.resume_lost = False
                    else:
                        self._status({"phase": "receiving", "progress": have, "size": self.size, "resume": have})
                    self._refuse(frame, f"chunk ahead of {have}")
                else:
                    self._refuse(frame, f"expected offset {have}")
            elif offset == have:
                self.received.extend(data)
        elif frame.type == L.UPDATE_COMMIT:
            if len(self.received) != self.size:
                self._status({"phase": "failed", "reason": "incomplete"})
                self._refuse(frame, "incomplete")
                return
            self._status({"phase": "rebooting", "version": self.version, "slot": "b"})
            self._later_do(0.2, self._reboot)

    def _later_do(self, delay: float, action: Any) -> None:
        async def later() -> None:
            await asyncio.sleep(delay)
            action()
            self._flush()

        task = asyncio.create_task(later())
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    def _reboot(self) -> None:
        self.link.reset()
        if self.rolls_back:
            hello = {**self.hello(), "boot": "rolled back from slot b: crashed 3 times"}
            self._send(L.HELLO, L.encode_json(hello))
            return
        self.fw, self.health = self.version, "trial"
        self._send(L.HELLO, L.encode_json(self.hello()))
        self._later_do(0.3, self._confirm)

    def _confirm(self) -> None:
        self.health = "confirmed"
        self._status({"phase": "confirmed", "fw": self.fw, "slot": "b"})


@contextlib.contextmanager
def wired(monkeypatch: Any, unit: ScriptedUnit) -> Any:
    """The flasher's serial ports open ``unit`` instead."""
    from offhook.fleet import flasher

    monkeypatch.setattr(flasher, "SerialTransport", lambda path: Wire(unit))
    yield unit
