"""A unit session whose messages wait in queues for a reader (tests, scripts).

The driver is offhook.unitlink.UnitLink (the daemon and the fleet tools use it with their own
handlers); these names stay importable from here.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from offhook.transport.base import Transport
from offhook.unitlink import UNIT_MESSAGES_KEPT, ButtonEvent, Inbox, UnitInfo, UnitLink, UnitLost

__all__ = ["UNIT_MESSAGES_KEPT", "ButtonEvent", "UnitInfo", "UnitLost", "UnitSession"]


class UnitSession(UnitLink):
    """A UnitLink with an Inbox as its handler, the Inbox's queues at hand."""

    def __init__(self, transport: Transport, clock: Callable[[], float] = time.monotonic) -> None:
        inbox = Inbox()
        super().__init__(transport, clock, inbox)
        self.events, self.hid_leds, self.resync, self.unit_messages = (
            inbox.events,
            inbox.hid_leds,
            inbox.resync,
            inbox.frames,
        )
