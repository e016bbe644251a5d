"""Flash signed bundles onto units over the link, many at once, and ask units who they are.

One asyncio task per unit, each with its own link (offhook.linkproto) over a transport
(serial: a real unit's CDC port or a simulated unit's pty). The host side only frames
bytes and waits for ACKs, so twenty units cost it little; the link rate is the limit.

Per unit: HELLO (board and version), UPDATE_BEGIN, the bundle in UPDATE_CHUNKs (a window
of frames in flight), UPDATE_COMMIT; the unit verifies, then switches slots, deferring
while a call is up ("deferred"); after its reset, its HELLO must report the new version
and the unit must confirm its own health (UPDATE_STATUS "confirmed" or HELLO health).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from offhook import __version__
from offhook import linkproto as L
from offhook.transport.base import Transport, TransportClosed
from offhook.transport.hid import HidTransport
from offhook.transport.serial import SerialTransport

CHUNK = L.MAX_PAYLOAD - 4
WINDOW = 12  # reliable frames in flight (the link allows 16)
HELLO_TIMEOUT_S = 5.0
CONFIRM_TIMEOUT_S = 45.0
IDLE_TIMEOUT_S = 10.0  # no ACK progress this long during the transfer: give up this try


class FlashFailed(Exception):
    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry


@dataclass
class UnitInfo:
    path: str
    transport: str = "serial"
    serial: str = ""
    board: str = ""
    fw: str = ""
    slot: str = ""
    health: str = ""
    safe_mode: bool = False
    error: str = ""
    hid_path: str = ""  # its HID vendor interface too (transport "serial+hid")


@dataclass
class FlashResult:
    unit: str
    path: str
    old: str = ""
    new: str = ""
    result: str = "failed"  # "ok" | "up to date" | "failed"
    reason: str = ""
    tries: int = 0
    seconds: float = 0.0
    bytes_sent: int = 0
    transfer_s: float = 0.0  # UPDATE_BEGIN to the last chunk acknowledged
    retransmissions: int = 0  # frames the link sent again (ACK late or lost)
    events: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        out = asdict(self)
        out.pop("events")
        return out


Progress = Callable[[str, int, int, str], None]  # (path, done, total, phase)


class UnitLink:
    """A host-side link to one unit: frames in, reliable frames out, waits for conditions."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        # Generous retry: twenty VMs on two cores may take a while to ACK; a retransmission costs link time.
        self.link = L.Link(retry_ms=1000, max_tries=6)
        self.frames: asyncio.Queue[L.Frame] = asyncio.Queue()
        self.hello: dict | None = None
        self.changed = asyncio.Event()
        self.closed = False
        self._t0 = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    def now(self) -> int:
        return int((time.monotonic() - self._t0) * 1000)

    async def open(self) -> None:
        await self.transport.open()
        await self.transport.write(b"\x00")
        self._tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._poller())]

    async def close(self) -> None:
        # Let frames still on their way (a refused update's chunks) reach the unit and be ACKed
        # first: arriving after the next session's HELLO they would reuse its sequence numbers.
        if self._tasks and not self.closed:
            with contextlib.suppress(FlashFailed):
                await self.wait_for(lambda: not self.link.pending, 2.0, "")
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.transport.close()

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.transport.read()
                for item in self.link.receive(data, self.now()):
                    if isinstance(item, L.Frame):
                        if item.type == L.HELLO:
                            with contextlib.suppress(ValueError):
                                self.hello = L.decode_json(item.payload)
                        self.frames.put_nowait(item)
                await self.flush()
                self.changed.set()
        except TransportClosed:
            self.closed = True
            self.changed.set()

    async def _poller(self) -> None:
        with contextlib.suppress(TransportClosed):
            while True:
                await asyncio.sleep(0.05)
                self.link.poll(self.now())
                await self.flush()

    async def flush(self) -> None:
        out = self.link.take_output()
        if out:
            await self.transport.write(out)

    async def send(self, mtype: int, payload: bytes = b"") -> int:
        seq = self.link.send(mtype, payload, self.now())
        await self.flush()
        return seq

    async def say_hello(self) -> dict:
        self.hello = None
        self.link.reset()
        await self.send(L.HELLO, L.encode_json({"proto": L.PROTOCOL_VERSION, "host": __version__}))
        # Wait for the unit's HELLO and the ACK of ours: a retransmitted HELLO arriving after the
        # next frames would restart the unit's session (and its duplicate window) in the middle of them.
        await self.wait_for(
            lambda: self.hello is not None and not self.link.pending, HELLO_TIMEOUT_S, "no HELLO from the unit"
        )
        assert self.hello is not None
        return self.hello

    async def wait_for(self, condition: Callable[[], bool], timeout: float, reason: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.closed:
                raise FlashFailed("link closed", retry=True)
            left = deadline - time.monotonic()
            if left <= 0:
                raise FlashFailed(reason, retry=True)
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(left, 0.25))


def _info(path: str, hello: dict, transport: str) -> UnitInfo:
    return UnitInfo(
        path=path,
        transport=transport,
        serial=str(hello.get("serial", "")),
        board=str(hello.get("board", "")),
        fw=str(hello.get("fw", "")),
        slot=str(hello.get("slot", "")),
        health=str(hello.get("health", "")),
        safe_mode=bool(hello.get("safe_mode", False)),
    )


async def query(path: str, transport: str = "serial", hid_path: str = "") -> UnitInfo:
    """One unit's HELLO: serial, board, firmware version, slot, health. ``transport`` names how
    the unit is reachable (discovery.Candidate.transport); a HID-only unit is asked over HID,
    every other over its serial port."""
    unit = UnitLink(HidTransport(path) if transport == "hid" else SerialTransport(path))
    try:
        await unit.open()
        info = _info(path, await unit.say_hello(), transport)
    except (FlashFailed, TransportClosed) as exc:
        info = UnitInfo(path=path, transport=transport, error=str(exc))
    finally:
        await unit.close()
    info.hid_path = hid_path
    return info


async def identify(path: str, seconds: float) -> UnitInfo:
    """Blink the unit (STATE identify flag) for ``seconds``, then show "no host" again."""
    unit = UnitLink(SerialTransport(path))
    info = UnitInfo(path=path, transport="serial")
    try:
        await unit.open()
        info = _info(path, await unit.say_hello(), "serial")
        await unit.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_OFFLINE, L.STATE_IDENTIFY))
        await asyncio.sleep(seconds)
        await unit.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_OFFLINE, 0))
        await asyncio.sleep(0.3)
    except (FlashFailed, TransportClosed) as exc:
        info.error = str(exc)
    finally:
        await unit.close()
    return info


class Flasher:
    """Flash one bundle onto one unit (one try); ``run`` adds retries."""

    def __init__(self, path: str, bundle: bytes, manifest: dict, progress: Progress | None = None) -> None:
        self.path = path
        self.bundle = bundle
        self.manifest = manifest
        self.progress = progress or (lambda *_: None)
        self.result = FlashResult(unit="?", path=path, new=manifest["version"])

    def _phase(self, done: int, phase: str) -> None:
        self.progress(self.path, done, len(self.bundle), phase)

    async def run(self, retries: int = 2) -> FlashResult:
        start = time.monotonic()
        for attempt in range(retries + 1):
            self.result.tries = attempt + 1
            try:
                await self._once()
                break
            except FlashFailed as exc:
                self.result.result = "failed"
                self.result.reason = str(exc)
                self._phase(0, "failed")
                if not exc.retry or attempt == retries:
                    break
                self._phase(0, f"retry {attempt + 1}")
                await asyncio.sleep(0.5)
        self.result.seconds = time.monotonic() - start
        return self.result

    async def _once(self) -> None:
        unit = UnitLink(SerialTransport(self.path))
        try:
            await unit.open()
            await self._transfer(unit)
        except TransportClosed as exc:
            # Unplugged at open or mid-write (EIO on the port): a failed try like any other.
            raise FlashFailed(str(exc), retry=True) from None
        finally:
            await unit.close()

    async def _transfer(self, unit: UnitLink) -> None:
        r = self.result
        hello = await unit.say_hello()
        r.unit = str(hello.get("serial", "?"))
        r.old = str(hello.get("fw", ""))
        want = self.manifest["version"]
        if hello.get("proto") != L.PROTOCOL_VERSION:
            raise FlashFailed(f"unit speaks link protocol {hello.get('proto')}, this host {L.PROTOCOL_VERSION}")
        if hello.get("board") != self.manifest["board"]:
            raise FlashFailed(f"unit is {hello.get('board')}, bundle is for {self.manifest['board']}")
        if r.old == want and hello.get("health") in ("confirmed", None) and not hello.get("safe_mode"):
            r.result, r.reason = "up to date", ""
            self._phase(len(self.bundle), "up to date")
            return
        statuses: list[dict] = []
        nacks: list[tuple[int, str]] = []
        ours: set[int] = set()
        nacked: set[int] = set()

        def drain() -> None:
            while not unit.frames.empty():
                frame = unit.frames.get_nowait()
                if frame.type == L.UPDATE_STATUS:
                    with contextlib.suppress(ValueError):
                        statuses.append(L.decode_json(frame.payload))
                elif frame.type == L.NACK:
                    seq, _code, reason = L.decode_nack(frame.payload)
                    if seq in ours:
                        nacks.append((seq, reason))
                        nacked.add(seq)

        def check() -> int | None:
            """Raise on a refusal; return the offset to go back to if the unit asked for one."""
            failed = unit.link.take_failed()  # NACKed frames land here too
            drain()
            rewind = None
            for _seq, reason in nacks:
                if reason.startswith("expected offset "):
                    wanted = int(reason.rsplit(" ", 1)[1])
                    rewind = wanted if rewind is None else min(rewind, wanted)
                else:
                    raise FlashFailed(reason)
            nacks.clear()
            for status in statuses:
                if status.get("phase") == "failed":
                    raise FlashFailed(str(status.get("reason", "refused")))
            if any(seq not in nacked for seq, _type in failed):
                raise FlashFailed("unit stopped acknowledging", retry=True)
            return rewind

        meta = {"size": len(self.bundle), "version": want, "board": self.manifest["board"]}
        started = time.monotonic()
        ours.add(await unit.send(L.UPDATE_BEGIN, L.encode_json(meta)))
        self._phase(0, "sending")
        offset = 0
        last_progress = time.monotonic()
        while offset < len(self.bundle) or unit.link.pending:
            rewind = check()
            if rewind is not None and rewind < offset:
                r.events.append(f"rewind {rewind}")
                offset = rewind
                continue
            if offset < len(self.bundle) and unit.link.pending < WINDOW:
                data = self.bundle[offset : offset + CHUNK]
                ours.add(await unit.send(L.UPDATE_CHUNK, L.encode_chunk(offset, data)))
                offset += len(data)
                r.bytes_sent = offset
                if offset % (CHUNK * 16) < CHUNK or offset == len(self.bundle):
                    self._phase(offset, "sending")
                continue
            before = unit.link.pending
            unit.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(unit.changed.wait(), 0.25)
            if unit.closed:
                raise FlashFailed("link closed during transfer", retry=True)
            if unit.link.pending < before:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > IDLE_TIMEOUT_S:
                raise FlashFailed("transfer stalled", retry=True)
        r.transfer_s = time.monotonic() - started
        r.retransmissions += unit.link.stats["retries"]
        ours.add(await unit.send(L.UPDATE_COMMIT))
        self._phase(len(self.bundle), "verifying")

        def switched() -> bool:
            check()
            phases = [s.get("phase") for s in statuses]
            if "deferred" in phases and "rebooting" not in phases:
                r.events.append("deferred")
                self._phase(len(self.bundle), "deferred: call in progress")
            return "rebooting" in phases

        await unit.wait_for(switched, 24 * 3600, "no switch")  # a call may last; the unit says when
        self._phase(len(self.bundle), "rebooting")
        statuses.clear()
        unit.hello = None

        # The unit resets: a real one re-enumerates (the port may vanish), a simulated one keeps its pty.
        # A HELLO the old firmware sent just before its reset is stale: wait for the new version, or for
        # a boot loader that reports a rollback.
        def back() -> bool:
            hello = unit.hello or {}
            if "rolled back" in str(hello.get("boot", "")):
                raise FlashFailed(f"rolled back to {hello.get('fw')}: {hello.get('boot')}")
            return hello.get("fw") == want

        await unit.wait_for(back, CONFIRM_TIMEOUT_S, "unit did not come back with the new version")
        await unit.send(L.HELLO, L.encode_json({"proto": L.PROTOCOL_VERSION, "host": __version__}))
        self._phase(len(self.bundle), "confirming")

        def confirmed() -> bool:
            drain()
            if unit.hello and unit.hello.get("health") == "confirmed" and unit.hello.get("fw") == want:
                return True
            return any(s.get("phase") == "confirmed" and s.get("fw") == want for s in statuses)

        await unit.wait_for(confirmed, CONFIRM_TIMEOUT_S, "new firmware did not confirm its health")
        r.result, r.reason = "ok", "switched after the call ended" if "deferred" in r.events else ""
        self._phase(len(self.bundle), "ok")


async def flash_all(
    paths: list[str], bundle: bytes, manifest: dict, parallel: int, retries: int = 2, progress: Progress | None = None
) -> list[FlashResult]:
    gate = asyncio.Semaphore(max(1, parallel))

    async def one(path: str) -> FlashResult:
        async with gate:
            return await Flasher(path, bundle, manifest, progress).run(retries)

    return list(await asyncio.gather(*(one(path) for path in paths)))
