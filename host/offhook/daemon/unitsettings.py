"""The unit's part of the floor policy, carried to the unit the daemon owns over its own UnitLink.

Central's policy also holds the unit's settings (``settings.UNIT_KEYS``: brightness, debounce, the
button map...). The daemon hands this the policy when it applies it (only when the desk is idle),
and says when its unit connects. Each time, one task reads the unit's config (CONFIG_GET); when it
differs from the settings in effect, it sends them (CONFIG_SET) and takes the unit's answer as the
verification: its CONFIG (the whole config after the change) must show every value sent, a NACK
is a refusal with the unit's reason. A unit that already shows them is left alone (no flash
write), and a change found while a call or its wrap-up runs waits until the desk is idle.

``state`` is what the report shows: the policy version and one of none (central never sent a
policy), checking, sending, waiting (for the desk to be idle), verified, refused, failed, no unit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from offhook import linkproto as L
from offhook import settings
from offhook.unitlink import Message, UnitLink, UnitLost

log = logging.getLogger(__name__)

ANSWER_S = 5.0  # the unit answers a CONFIG_GET or CONFIG_SET within this


class Owner(Protocol):
    """What this needs of the daemon: its session with the unit."""

    session: UnitLink | None
    unit_connected: asyncio.Event


class Refused(Exception):
    """The unit NACKed the request: str() is its reason."""


class UnitSettings:
    """The unit's settings in effect and the state of the last check. ``on_message`` must see what
    the unit sends (the daemon's handler calls it); ``run`` is one of the daemon's tasks."""

    def __init__(self, owner: Owner, idle: Callable[[], bool], changed: Callable[[], None]) -> None:
        """``idle()``: no call and no wrap-up (Desk.idle). ``changed()``: the state changed (the
        daemon reports its settings again)."""
        self.owner = owner
        self.idle = idle
        self.changed = changed
        self.policy: settings.Policy | None = None  # the one in effect
        self.state: dict[str, Any] = {"version": 0, "state": "none", "error": None}
        self._wake = asyncio.Event()
        self._owed = False  # a change is waiting for the desk to be idle
        self._answer: asyncio.Future[L.Frame] | None = None
        self._seq: int | None = None  # the request whose NACK would be the answer

    # ------------------------------------------------ what the daemon tells it

    def use(self, policy: settings.Policy) -> None:
        """The daemon applied ``policy`` (the desk is idle): its unit settings go to the unit. The
        state says so at once, so no report shows the previous version as the one in effect."""
        self.policy = policy
        self.state = {"version": policy.version, "state": "checking", "error": None}
        self._wake.set()

    def connected(self) -> None:
        """A unit (re)connected, or reset: it is checked against the settings in effect."""
        if self.policy is not None:
            self._wake.set()

    def now_idle(self) -> None:
        """The desk is idle: a change that waited for it goes now."""
        if self._owed:
            self._owed = False
            self._wake.set()

    def on_message(self, message: Message) -> None:
        """The unit's CONFIG answers our request (only this sends CONFIG_GET/SET on the daemon's
        session, one at a time); a NACK answers it when it names the request."""
        answer = self._answer
        if answer is None or answer.done() or not isinstance(message, L.Frame):
            return
        if message.type == L.CONFIG or (message.type == L.NACK and _nack_seq(message) == self._seq):
            answer.set_result(message)

    def report(self) -> dict[str, Any]:
        """The state of the last check, and the unit's settings in effect with their sources."""
        effective = settings.unit_effective(self.policy)
        values = {key: {"value": e.value, "source": e.source, "locked": e.locked} for key, e in effective.items()}
        return {**self.state, "effective": values}

    # ------------------------------------------------ the task

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            policy = self.policy
            if policy is None:
                continue
            try:
                await self._sync(policy)
            except UnitLost as exc:  # the next session checks again
                self._set(policy.version, "failed", f"unit lost: {exc}")
            except (TimeoutError, Refused) as exc:
                reason = str(exc) or "no answer"
                state = "refused" if isinstance(exc, Refused) else "failed"
                self._set(policy.version, state, reason if state == "refused" else f"{reason} from the unit")

    async def _sync(self, policy: settings.Policy) -> None:
        want = {key: chosen.value for key, chosen in settings.unit_effective(policy).items()}
        session = self.owner.session
        if session is None or not self.owner.unit_connected.is_set():
            self._set(policy.version, "no unit", None)  # checked when a unit connects
            return
        if not _differs(want, await self._ask(session, L.CONFIG_GET, b"")):
            self._set(policy.version, "verified", None)
            return
        if not self.idle():
            self._owed = True
            self._set(policy.version, "waiting", None)
            return
        self._set(policy.version, "sending", None)
        wrong = _differs(want, await self._ask(session, L.CONFIG_SET, L.encode_json(want)))
        if wrong:
            self._set(policy.version, "failed", f"the unit reports other values for {', '.join(wrong)}")
        else:
            self._set(policy.version, "verified", None)

    async def _ask(self, session: UnitLink, mtype: int, payload: bytes) -> dict[str, Any]:
        """The unit's config as its CONFIG answer shows it; Refused on its NACK, TimeoutError."""
        self._answer = asyncio.get_running_loop().create_future()
        try:
            self._seq = session.queue(mtype, payload)  # noted before its answer can arrive
            await session.flush()
            frame = await asyncio.wait_for(self._answer, ANSWER_S)
        finally:
            self._answer, self._seq = None, None
        if frame.type == L.NACK:
            raise Refused(L.decode_nack(frame.payload)[2])
        try:
            shown = L.decode_json(frame.payload).get("config")
        except (ValueError, AttributeError):
            shown = None
        return shown if isinstance(shown, dict) else {}

    def _set(self, version: int, state: str, error: str | None) -> None:
        self.state = {"version": version, "state": state, "error": error}
        level = logging.WARNING if error else logging.INFO
        log.log(level, "settings: unit settings of version %d %s%s", version, state, f": {error}" if error else "")
        self.changed()


def _differs(want: dict[str, Any], shown: dict[str, Any]) -> list[str]:
    return sorted(key for key, value in want.items() if shown.get(key) != value)


def _nack_seq(frame: L.Frame) -> int:
    try:
        return int(L.decode_nack(frame.payload)[0])
    except ValueError:
        return -1
