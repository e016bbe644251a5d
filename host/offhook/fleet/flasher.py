"""Flash signed bundles onto units over the link, many at once, and ask units who they are.

One asyncio task per unit, each with its own offhook.unitlink.UnitLink over a serial transport
(a real unit's CDC port or a simulated unit's pty). The host side only frames bytes and waits for
ACKs, so twenty units cost it little; the link rate is the limit.

Per unit: the HELLO exchange (board and version), then ``Update``: UPDATE_BEGIN, the bundle in
UPDATE_CHUNKs (a window of frames in flight), UPDATE_COMMIT; the unit verifies, then switches
slots, deferring while a call is up ("deferred"); after its reset, its HELLO must report the new
version and the unit must confirm its own health (UPDATE_STATUS "confirmed" or HELLO health).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import functools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from offhook import linkproto as L
from offhook.transport.base import TransportClosed
from offhook.transport.hid import HidTransport
from offhook.transport.serial import SerialTransport
from offhook.unitlink import Message, UnitInfo, UnitLink, UnitLost

__all__ = ["FlashFailed", "FlashResult", "Flasher", "Phase", "UnitInfo", "Update", "flash_all", "identify", "query"]

CHUNK = L.MAX_PAYLOAD - 4
WINDOW = 12  # reliable frames in flight (the link allows 16)
# Generous retry: twenty VMs on two cores may take a while to ACK; a retransmission costs link time.
RETRY_MS = 1000
MAX_TRIES = 6
HELLO_TIMEOUT_S = 5.0
CONFIRM_TIMEOUT_S = 45.0
IDLE_TIMEOUT_S = 10.0  # no ACK progress this long during the transfer: give up this try
SETTLE_S = 2.0  # frames still in flight when a try ends get this long to be ACKed (UnitLink.running)
RESUME_CAP = "update_resume"  # HELLO caps: its UPDATE_STATUS says where to resume (PROTOCOL.md)


class FlashFailed(Exception):
    def __init__(self, reason: str, retry: bool = False) -> None:
        super().__init__(reason)
        self.retry = retry


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


def _link(transport: SerialTransport | HidTransport) -> UnitLink:
    return UnitLink(transport, retry_ms=RETRY_MS, max_tries=MAX_TRIES)


async def query(path: str, transport: str = "serial", hid_path: str = "") -> UnitInfo:
    """One unit's HELLO: serial, board, firmware version, slot, health. ``transport`` names how
    the unit is reachable (discovery.Candidate.transport); a HID-only unit is asked over HID,
    every other over its serial port."""
    unit = _link(HidTransport(path) if transport == "hid" else SerialTransport(path))
    try:
        info = await unit.connect(HELLO_TIMEOUT_S)
    except (UnitLost, TransportClosed) as exc:
        info = UnitInfo(path=path, error=str(exc))
    finally:
        unit.close()
    return dataclasses.replace(info, path=path, transport=transport, hid_path=hid_path)


async def identify(path: str, seconds: float) -> UnitInfo:
    """Blink the unit (STATE identify flag) for ``seconds``, then show "no host" again."""
    unit = _link(SerialTransport(path))
    info = UnitInfo(path=path)
    try:
        info = await unit.connect(HELLO_TIMEOUT_S)
        async with unit.running(SETTLE_S):
            await unit.send_state(L.CALL_IDLE, L.AGENT_OFFLINE, L.STATE_IDENTIFY, 0)
            await asyncio.sleep(seconds)
            await unit.send_state(L.CALL_IDLE, L.AGENT_OFFLINE, 0, 0)
            await asyncio.sleep(0.3)
    except (UnitLost, TransportClosed) as exc:
        info.error = str(exc)
    finally:
        unit.close()
    return info


def _expected_offset(reason: str) -> int | None:
    """Where to resume, from a NACK's text: the fallback for a unit without RESUME_CAP, whose
    updater says it only as "expected offset N" (the safe-mode loader's /lib/updater.py, which is
    never updated over the link, and firmware before the field)."""
    if reason.startswith("expected offset "):
        return int(reason.rsplit(" ", 1)[1])
    return None


class Phase(enum.Enum):
    BEGIN = "begin"
    SENDING = "sending"
    COMMIT = "commit"
    REBOOTING = "rebooting"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"  # the ends: CONFIRMED, UP_TO_DATE, ROLLED_BACK, FAILED
    UP_TO_DATE = "up to date"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"


class Update:
    """One bundle onto one unit over an open UnitLink whose ``run()`` is going: a state machine.

    BEGIN → SENDING → COMMIT → REBOOTING → CONFIRMING → CONFIRMED; BEGIN → UP_TO_DATE; any of the
    first five → FAILED, REBOOTING or CONFIRMING → ROLLED_BACK. ``on_message`` (the link's handler,
    or called by the one it has) moves it on what the unit says; ``run`` does each phase's sending
    and waiting, calls ``progress(bytes done, phase text)`` and raises FlashFailed unless it ends
    CONFIRMED or UP_TO_DATE. Fills ``result``.
    """

    def __init__(
        self, unit: UnitLink, bundle: bytes, manifest: dict, result: FlashResult, progress: Callable[[int, str], None]
    ) -> None:
        self.unit = unit
        self.bundle = bundle
        self.manifest = manifest
        self.want = str(manifest["version"])
        self.result = result
        self.progress = progress
        self.phase = Phase.BEGIN
        self.failure: FlashFailed | None = None
        self.offset = 0  # the next byte to send
        self._ours: set[int] = set()  # seqs this update sent: a NACK of another frame is not its business
        self._chunk_at: dict[int, int] = {}  # seq of each UPDATE_CHUNK sent -> its offset
        self._structured = False  # the unit says where to resume in UPDATE_STATUS (RESUME_CAP)
        self._deferred = False
        self._back = False  # the new version said HELLO
        self._confirmed = False
        self._started = 0.0

    # ------------------------------------------------ what the unit says

    def on_message(self, message: Message) -> None:
        if isinstance(message, UnitInfo):
            self._hello(message)
        elif isinstance(message, L.Frame) and message.type == L.UPDATE_STATUS:
            try:
                status = L.decode_json(message.payload)
            except ValueError:
                return
            self._status(status)
        elif isinstance(message, L.Frame) and message.type == L.NACK and len(message.payload) >= 3:
            seq, _code, reason = L.decode_nack(message.payload)
            if seq in self._ours:
                self._nack(seq, reason)

    def _status(self, status: dict) -> None:
        phase, sending = status.get("phase"), self.phase in (Phase.BEGIN, Phase.SENDING, Phase.COMMIT)
        if phase == "failed" and sending:
            self._fail(str(status.get("reason", "refused")))
        elif phase == "receiving" and type(status.get("resume")) is int:
            self._rewind(status["resume"])
        elif phase == "deferred" and self.phase is Phase.COMMIT and not self._deferred:
            self._deferred = True
            self.result.events.append("deferred")
            self.progress(len(self.bundle), "deferred: call in progress")
        elif phase == "rebooting" and self.phase is Phase.COMMIT:
            self.phase = Phase.REBOOTING
        elif phase == "confirmed" and status.get("fw") == self.want:
            self._confirmed = self._confirmed or self.phase in (Phase.REBOOTING, Phase.CONFIRMING)

    def _nack(self, seq: int, reason: str) -> None:
        if self.phase not in (Phase.BEGIN, Phase.SENDING, Phase.COMMIT):
            return
        if self._structured:
            # UPDATE_STATUS says where to resume ("resume") or why it failed. But the unit drops a
            # status when its send window is full, and without a rewind here the emptied window
            # would read as "all delivered" and COMMIT an incomplete bundle: the refused chunk was
            # not taken, so send from it again (the unit ignores what it already has).
            if seq in self._chunk_at:
                self._rewind(self._chunk_at[seq])
            return
        offset = _expected_offset(reason)
        if offset is None:
            self._fail(reason)
        else:
            self._rewind(offset)

    def _rewind(self, offset: int) -> None:
        if self.phase is Phase.SENDING and offset < self.offset:
            self.result.events.append(f"rewind {offset}")
            self.offset = offset

    def _hello(self, info: UnitInfo) -> None:
        if self.phase not in (Phase.REBOOTING, Phase.CONFIRMING):
            return
        if "rolled back" in info.boot:
            self._fail(f"rolled back to {info.fw}: {info.boot}", end=Phase.ROLLED_BACK)
        elif info.fw == self.want:
            self._back = True
            self._confirmed = self._confirmed or info.health == "confirmed"

    def _fail(self, reason: str, retry: bool = False, end: Phase = Phase.FAILED) -> None:
        if self.failure is None:
            self.failure, self.phase = FlashFailed(reason, retry), end

    # ------------------------------------------------ each phase's work

    async def run(self) -> None:
        steps = {
            Phase.BEGIN: self._begin,
            Phase.SENDING: self._send_chunks,
            Phase.COMMIT: self._commit,
            Phase.REBOOTING: self._reboot,
            Phase.CONFIRMING: self._confirm,
        }
        while self.phase in steps:
            await steps[self.phase]()
        if self.failure is not None:
            raise self.failure

    async def _begin(self) -> None:
        info, r, total = self.unit.info, self.result, len(self.bundle)
        assert info is not None, "Update needs a unit that said HELLO"
        r.unit, r.old = info.serial or "?", info.fw
        self._structured = RESUME_CAP in info.caps
        if info.proto != L.PROTOCOL_VERSION:
            self._fail(f"unit speaks link protocol {info.proto}, this host {L.PROTOCOL_VERSION}")
        elif info.board != self.manifest["board"]:
            self._fail(f"unit is {info.board}, bundle is for {self.manifest['board']}")
        elif info.fw == self.want and info.health in ("confirmed", "") and not info.safe_mode:
            r.result, r.reason, self.phase = "up to date", "", Phase.UP_TO_DATE
            self.progress(total, "up to date")
        else:
            meta = {"size": total, "version": self.want, "board": self.manifest["board"]}
            self._started = time.monotonic()
            self._post(L.UPDATE_BEGIN, L.encode_json(meta), Phase.SENDING)
            self.progress(0, "sending")
            await self.unit.flush()

    async def _send_chunks(self) -> None:
        """A window of chunks in flight, back to where the unit asks; COMMIT once every one is ACKed."""
        link, r, total = self.unit.link, self.result, len(self.bundle)
        last_progress = time.monotonic()
        while self.phase is Phase.SENDING:
            if self.offset < total and link.pending < WINDOW:
                data = self.bundle[self.offset : self.offset + CHUNK]
                self._chunk_at[self._post(L.UPDATE_CHUNK, L.encode_chunk(self.offset, data))] = self.offset
                self.offset += len(data)
                r.bytes_sent = self.offset
                if self.offset % (CHUNK * 16) < CHUNK or self.offset == total:
                    self.progress(self.offset, "sending")
                await self.unit.flush()
                continue
            if self.offset >= total and not link.pending:
                r.transfer_s = time.monotonic() - self._started
                r.retransmissions += link.stats["retries"]
                self._post(L.UPDATE_COMMIT, b"", Phase.COMMIT)
                self.progress(total, "verifying")
                await self.unit.flush()
                return
            before = link.pending
            await self.unit.until(functools.partial(self._moved_on, before, self.offset), 0.25)
            if link.pending < before:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > IDLE_TIMEOUT_S:
                self._fail("transfer stalled", retry=True)

    def _post(self, mtype: int, payload: bytes, phase: Phase | None = None) -> int:
        """Queue a frame as this update's, and enter ``phase``, before it is written: the unit's
        answer may be handled while the write is under way. Returns its seq."""
        seq = self.unit.queue(mtype, payload)
        self._ours.add(seq)
        self.phase = phase or self.phase
        return seq

    def _moved_on(self, pending: int, offset: int) -> bool:
        """Room in the window, a rewind or another phase since ``pending`` and ``offset``."""
        return self.unit.link.pending < pending or self.offset != offset or self.phase is not Phase.SENDING

    async def _commit(self) -> None:
        """The unit verifies, then switches slots; a call defers that, and a call may last."""
        if not await self.unit.until(lambda: self.phase is not Phase.COMMIT, 24 * 3600):
            self._fail("no switch", retry=True)

    async def _reboot(self) -> None:
        """The unit resets: a real one re-enumerates (the port may vanish), a simulated one keeps its
        pty. A HELLO the old firmware sent just before its reset is stale: wait for the new version,
        or for a boot loader that reports a rollback; then HELLO, so the new firmware has its host."""
        self.progress(len(self.bundle), "rebooting")
        if not await self.unit.until(lambda: self._back or self.phase is not Phase.REBOOTING, CONFIRM_TIMEOUT_S):
            self._fail("unit did not come back with the new version", retry=True)
        if self.phase is Phase.REBOOTING:
            info = await self.unit.hello(CONFIRM_TIMEOUT_S)
            self.phase = Phase.CONFIRMING if self.phase is Phase.REBOOTING else self.phase
            self._hello(info)
            self.progress(len(self.bundle), "confirming")

    async def _confirm(self) -> None:
        if not await self.unit.until(lambda: self._confirmed or self.phase is not Phase.CONFIRMING, CONFIRM_TIMEOUT_S):
            self._fail("new firmware did not confirm its health", retry=True)
        if self.phase is Phase.CONFIRMING:
            self.phase = Phase.CONFIRMED
            r = self.result
            r.result, r.reason = "ok", "switched after the call ended" if self._deferred else ""
            self.progress(len(self.bundle), "ok")


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
        unit = _link(SerialTransport(self.path))
        update = Update(unit, self.bundle, self.manifest, self.result, self._phase)
        unit.handler = update.on_message
        try:
            await unit.connect(HELLO_TIMEOUT_S)
            async with unit.running(SETTLE_S):
                await update.run()
        except (UnitLost, TransportClosed) as exc:
            # Unplugged at open or mid-write (EIO on the port), or silent: a failed try like any other.
            raise FlashFailed(str(exc), retry=True) from None
        finally:
            unit.close()


async def flash_all(
    paths: list[str], bundle: bytes, manifest: dict, parallel: int, retries: int = 2, progress: Progress | None = None
) -> list[FlashResult]:
    gate = asyncio.Semaphore(max(1, parallel))

    async def one(path: str) -> FlashResult:
        async with gate:
            return await Flasher(path, bundle, manifest, progress).run(retries)

    return list(await asyncio.gather(*(one(path) for path in paths)))
