"""The moments of a call the desk records and the store keeps: one vocabulary for both."""

from __future__ import annotations

from enum import StrEnum


class Moment(StrEnum):
    RINGING = "ringing"
    ANSWERED = "answered"
    HOLD_STARTED = "hold_started"
    HOLD_ENDED = "hold_ended"
    HUNG_UP = "hung_up"
    WRAP_UP_ENDED = "wrap_up_ended"
    MISSED = "missed"
    ABANDONED = "abandoned"
    UNANSWERED = "unanswered"  # an outbound call nobody answered: stored as abandoned (rang, not handled)
    TRANSFERRED = "transferred"
    ESCALATED = "escalated"


# The recorder method each moment calls (CallRecorder has one of each name).
RECORDED_AS = {moment: Moment.ABANDONED if moment is Moment.UNANSWERED else moment for moment in Moment}
COMPLETING = frozenset({Moment.WRAP_UP_ENDED, Moment.MISSED, Moment.ABANDONED})
