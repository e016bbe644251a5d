"""The daemon's update relay: firmware for the unit it owns, applied through its own session.

An update (a local admin's ``offhook flash``, or a rollout from central) is checked whole against
the fleet's public key, the unit's board and its version, then queued. It waits until the desk is
idle (no call, no wrap-up) and the unit is connected, is checked again against the unit as it is
then, and goes to the unit over the daemon's own UnitLink (serial or HID: whichever the daemon
speaks), with no hand-over of the port. The unit checks everything a third time and defers the
switch itself if a call starts meanwhile.

Phases, reported to ``report`` as ``{"event": "update", "id", "phase", "percent", "version",
"reason", "source"}``: queued (waiting for idle), downloading (central's bundles), verified,
receiving (percent), rebooting, confirmed, up to date, rolled back, failed (reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from offhook import bundle as B
from offhook import linkproto as L
from offhook.fleet.flasher import FlashFailed, FlashResult, Phase, Update
from offhook.unitlink import Message, UnitInfo, UnitLink, UnitLost

log = logging.getLogger(__name__)

FLEET_KEY = Path("/etc/offhook/fleet.pub")  # IT's public key (`offhook fleet keygen`'s KEY.pub)
ADMIN_HASH = Path("/etc/offhook/admin.sha256")  # sha256 of the admin secret: readable by the daemon's user
ADMIN_SECRET = Path("/etc/offhook/admin.secret")  # the secret: root (or an admin group) only, read by `offhook flash`
POLL_S = 0.25
RECONNECT_S = 60.0  # a real unit re-enumerates after its reset: the daemon's next session must come within this
CONFIRM_S = 45.0
TRIES = 3  # a unit lost mid-transfer: the next session resumes where the unit says
LOADER = 1  # the boot loader version the host assumes; the unit checks its own
ENDS = ("confirmed", "up to date", "rolled back", "failed")


class UpdateRefused(ValueError):
    """An update the daemon will not apply; str() is the one-line reason."""


def fleet_key() -> int | None:
    """The fleet's public modulus: $OFFHOOK_FLEET_PUBKEY or /etc/offhook/fleet.pub, or None."""
    path = Path(os.environ.get("OFFHOOK_FLEET_PUBKEY") or FLEET_KEY)
    if not path.is_file():
        return None
    from offhook.fleet import keys

    try:
        return B.key_modulus(keys.modulus_hex(keys.load_public(path)))
    except (OSError, ValueError) as exc:
        log.warning("fleet key %s unreadable: %s: every update is refused", path, exc)
        return None


def admin_ok(secret: str, hash_file: Path | None = None) -> bool:
    """True when ``secret`` is the admin secret (its sha256 is in ``hash_file``): a local flash
    needs it, never the panel's user token."""
    path = hash_file or Path(os.environ.get("OFFHOOK_ADMIN_HASH") or ADMIN_HASH)
    try:
        want = path.read_text().split()[0].lower()
    except (OSError, IndexError):
        return False
    got = hashlib.sha256(secret.strip().encode()).hexdigest()
    return bool(secret.strip()) and len(want) == 64 and hmac.compare_digest(got.encode(), want.encode())


class _Nowhere:
    def begin(self, path: str, size: int) -> None: ...

    def write(self, data: bytes) -> None: ...

    def end(self, path: str) -> None: ...


def check_bundle(data: bytes, n: int | None, board: str, installed: str) -> dict[str, Any]:
    """The bundle's manifest after the whole check the unit will make (signature, board, no
    downgrade, each file's size and sha256, nothing trailing); UpdateRefused with the reason."""
    if n is None:
        raise UpdateRefused("no fleet public key on this PC (/etc/offhook/fleet.pub)")
    reader = B.Reader(n, _Nowhere(), board, installed or "0.0.0", LOADER)
    try:
        reader.feed(data)
        reader.finish()
    except B.BundleError as exc:
        raise UpdateRefused(str(exc)) from None
    assert reader.manifest is not None
    return reader.manifest


class Owner(Protocol):
    """What the relay needs of the daemon: its session and the unit's latest HELLO."""

    session: UnitLink | None
    unit: UnitInfo | None


@dataclass
class Job:
    id: int
    source: str  # "local" or a rollout's name
    data: bytes = b""
    version: str = ""
    sha256: str = ""
    phase: str = "queued"
    percent: int = 0
    reason: str = ""
    fetch: Callable[[], Awaitable[bytes]] | None = None  # central's bundle, downloaded when its turn comes
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "version": self.version,
            "sha256": self.sha256,
            "phase": self.phase,
            "percent": self.percent,
            "reason": self.reason,
        }


class UpdateRelay:
    """The queue and the one update in flight. ``on_message`` must see what the unit sends (the
    daemon's handler calls it first); ``run`` is one of the daemon's tasks."""

    def __init__(
        self,
        owner: Owner,
        idle: Callable[[], bool],
        report: Callable[[dict[str, Any]], None],
        key: int | None = None,
        resync: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``idle()``: no call and no wrap-up (Desk.idle). ``resync()``: the unit runs new firmware
        whose HELLO the update itself answered: the daemon sends it the whole state."""
        self.owner = owner
        self.idle = idle
        self.report = report
        self.resync = resync
        self.key = key
        self.jobs: list[Job] = []
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._update: Update | None = None
        self._after: str = ""  # the version a reset unit must confirm, when the update's session ended
        self._confirmed = False

    @property
    def busy(self) -> bool:
        """An update is being applied (the port must not be lent meanwhile)."""
        return self._update is not None

    # ------------------------------------------------ taking updates

    def submit(self, data: bytes, source: str = "local") -> Job:
        """Queue ``data`` after checking it against the unit as the daemon last saw it."""
        unit = self.owner.unit
        if unit is None:
            raise UpdateRefused("the daemon has no unit connected")
        manifest = check_bundle(data, self.key, unit.board, unit.fw)
        job = Job(next(self._ids), source, data, str(manifest["version"]), B.sha256_hex(data))
        return self._queue(job)

    def submit_remote(self, sha256: str, version: str, source: str, fetch: Callable[[], Awaitable[bytes]]) -> Job:
        """Queue central's bundle, downloaded (``fetch``) only when the desk is idle and it is next."""
        return self._queue(Job(next(self._ids), source, version=version, sha256=sha256, fetch=fetch))

    def _queue(self, job: Job) -> Job:
        for other in self.jobs:
            if other.phase not in ENDS and other.sha256 == job.sha256:
                return other  # the same bundle asked twice: one update
        self.jobs.append(job)
        self._set(job, "queued")
        self._wake.set()
        return job

    def cancel(self, source: str) -> None:
        """Drop queued updates from ``source`` (a rollout aborted); one in flight runs on."""
        for job in self.jobs:
            if job.source == source and job.phase == "queued":
                self._set(job, "failed", reason="cancelled")

    # ------------------------------------------------ the unit's messages

    def on_message(self, message: Message) -> None:
        if self._update is not None:
            self._update.on_message(message)
        elif self._after and isinstance(message, L.Frame) and message.type == L.UPDATE_STATUS:
            with contextlib.suppress(ValueError):
                status = L.decode_json(message.payload)
                self._confirmed |= status.get("phase") == "confirmed" and status.get("fw") == self._after

    # ------------------------------------------------ running

    async def run(self) -> None:
        while True:
            job = next((j for j in self.jobs if j.phase == "queued"), None)
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._until_ready()
            try:
                await self._apply(job)
            except UpdateRefused as exc:
                self._set(job, "failed", reason=str(exc))
            except Exception as exc:  # the relay never takes the daemon down
                log.exception("update %d", job.id)
                self._set(job, "failed", reason=f"internal error: {exc}")
            finally:
                self._update = None

    async def _until_ready(self) -> None:
        """Until the desk is idle and the unit connected: never during a call or its wrap-up."""
        while not (self.idle() and self.owner.session is not None and self.owner.unit is not None):
            await asyncio.sleep(POLL_S)

    async def _apply(self, job: Job) -> None:
        if job.fetch is not None and not job.data:
            self._set(job, "downloading")
            for attempt in range(TRIES):
                try:
                    job.data = await job.fetch()
                    break
                except ValueError as exc:  # cut or refused: the next try resumes where this one stopped
                    if attempt == TRIES - 1:
                        raise UpdateRefused(str(exc)) from None
                    await asyncio.sleep(2**attempt)
            if B.sha256_hex(job.data) != job.sha256:
                raise UpdateRefused("downloaded bundle does not match its sha256")
            await self._until_ready()
        unit = self.owner.unit
        assert unit is not None
        manifest = check_bundle(job.data, self.key, unit.board, unit.fw)  # the unit as it is now
        job.version = str(manifest["version"])
        self._set(job, "verified")
        result = FlashResult(unit=unit.serial, path=unit.path, new=job.version)
        for attempt in range(TRIES):
            session = await self._session()
            update = Update(session, job.data, manifest, result, lambda done, text: self._progress(job, done, text))
            self._update = update
            try:
                await update.run()
            except FlashFailed as exc:
                if update.phase is Phase.ROLLED_BACK:
                    self._set(job, "rolled back", reason=str(exc))
                    return
                if not exc.retry or attempt == TRIES - 1:
                    self._set(job, "failed", reason=str(exc))
                    return
            except UnitLost as exc:
                if update.phase in (Phase.REBOOTING, Phase.CONFIRMING):  # a real unit re-enumerates
                    self._update = None  # what the next session says is the relay's to read
                    await self._after_reset(job)
                    return
                if attempt == TRIES - 1:
                    self._set(job, "failed", reason=f"unit lost: {exc}")
                    return
            else:
                if update.phase is Phase.CONFIRMED and self.resync is not None:
                    with contextlib.suppress(UnitLost):
                        await self.resync()
                self._set(job, "up to date" if update.phase is Phase.UP_TO_DATE else "confirmed")
                return
            finally:
                self._update = None
            await self._until_ready()

    async def _session(self) -> UnitLink:
        """The daemon's live session, whose ``info`` is the unit's latest HELLO."""
        while (session := self.owner.session) is None or session.info is None:
            await asyncio.sleep(POLL_S)
        return session

    async def _after_reset(self, job: Job) -> None:
        """The session ended with the unit's reset: its next HELLO to the daemon says how it went."""
        self._set(job, "rebooting")
        self._after, self._confirmed = job.version, False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECONNECT_S + CONFIRM_S
        try:
            while loop.time() < deadline:
                session, unit = self.owner.session, self.owner.unit
                if session is not None and unit is not None and session.info is not None:
                    if "rolled back" in unit.boot:
                        self._set(job, "rolled back", reason=f"rolled back to {unit.fw}: {unit.boot}")
                        return
                    if unit.fw == job.version and (self._confirmed or unit.health in ("confirmed", "")):
                        self._set(job, "confirmed")
                        return
                await asyncio.sleep(POLL_S)
            self._set(job, "failed", reason="unit did not come back with the new version")
        finally:
            self._after = ""

    def _progress(self, job: Job, done: int, text: str) -> None:
        if text == "sending":
            self._set(job, "receiving", percent=done * 100 // max(1, len(job.data)))
        elif text == "deferred: call in progress":
            self._set(job, "receiving", percent=100, reason="deferred by the unit: call in progress")
        elif text in ("rebooting", "confirming"):
            self._set(job, "rebooting", percent=100)

    def _set(self, job: Job, phase: str, percent: int | None = None, reason: str = "") -> None:
        if (job.phase, job.percent) == (phase, percent) and not reason:
            return
        job.phase, job.reason = phase, reason
        if percent is not None:
            job.percent = percent
        elif phase in ("confirmed", "up to date"):
            job.percent = 100
        log.info("update %d (%s, %s): %s %s", job.id, job.source, job.version, phase, reason)
        if phase in ENDS:
            job.done.set()
        with contextlib.suppress(Exception):
            self.report({"event": "update", **job.view()})
