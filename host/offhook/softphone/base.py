"""The softphone adapter interface: what the daemon asks of any softphone, and what it hears.

Adapters (baresip over ctrl_tcp, a web softphone over the local API) translate their
dialect into these calls and events. The daemon only ever sees this module's types.
Every request returns the state the softphone *confirmed*, never the wish: LEDs are
driven from confirmed state only.
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass, field
from enum import StrEnum


class CallState(StrEnum):
    INCOMING = "incoming"  # ringing at the agent
    OUTGOING = "outgoing"  # the agent dialled; ringing at the far end
    ESTABLISHED = "established"
    CLOSED = "closed"


class Op(StrEnum):
    """What the daemon asks of a softphone (one ``Softphone`` method each)."""

    ANSWER = "answer"
    REJECT = "reject"
    HANGUP = "hangup"
    HOLD = "hold"
    RESUME = "resume"
    MUTE = "mute"
    TRANSFER = "transfer"
    DIAL = "dial"


class EventKind(StrEnum):
    INCOMING = "incoming"
    RINGING = "ringing"  # an outgoing call rings at the far end
    ESTABLISHED = "established"
    HELD = "held"
    RESUMED = "resumed"
    CLOSED = "closed"
    MUTED = "muted"
    UNMUTED = "unmuted"
    CONNECTED = "connected"  # the adapter (re)connected and rebuilt its state
    DISCONNECTED = "disconnected"  # the softphone went away; state unknown until CONNECTED


@dataclass
class Call:
    call_id: str
    peer: str
    direction: str  # "inbound" | "outbound"
    state: CallState
    held: bool = False
    muted: bool | None = None  # None: not confirmed since the adapter (re)started


@dataclass
class SoftphoneEvent:
    kind: EventKind
    call_id: str = ""
    peer: str = ""
    direction: str = ""
    reason: str = ""
    calls: list[Call] = field(default_factory=list)  # snapshot, on CONNECTED


class SoftphoneError(RuntimeError):
    """The softphone refused or could not carry out a request (message says why)."""


class SoftphoneUnavailable(SoftphoneError):
    """The softphone is not reachable right now; the adapter keeps reconnecting."""


class Softphone(abc.ABC):
    """One softphone. Requests raise SoftphoneError on refusal; events arrive on ``events``."""

    #: True where the softphone can consult and then join (attended transfer) itself.
    has_attended_transfer: bool = False
    #: True where the softphone reports its call list (CONNECTED) once reachable: until then the
    #: daemon claims nothing on the unit. A web softphone has no calls until its page registers.
    announces_calls: bool = True

    def __init__(self) -> None:
        self.events: asyncio.Queue[SoftphoneEvent] = asyncio.Queue()
        self.calls: dict[str, Call] = {}

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (and keep reconnecting in the background)."""

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def answer(self, call_id: str) -> None:
        """Answer a ringing call; a call already established is put on hold by the softphone."""

    @abc.abstractmethod
    async def reject(self, call_id: str) -> None: ...

    @abc.abstractmethod
    async def hangup(self, call_id: str) -> None: ...

    @abc.abstractmethod
    async def hold(self, call_id: str) -> bool:
        """Returns the confirmed held state."""

    @abc.abstractmethod
    async def resume(self, call_id: str) -> bool:
        """Returns the confirmed held state (False when resumed)."""

    @abc.abstractmethod
    async def set_mute(self, call_id: str, muted: bool) -> bool:
        """Returns the confirmed mute state."""

    @abc.abstractmethod
    async def transfer(self, call_id: str, target: str) -> None:
        """Blind transfer to a SIP URI."""

    @abc.abstractmethod
    async def dial(self, target: str) -> str:
        """Returns the new call's id."""
