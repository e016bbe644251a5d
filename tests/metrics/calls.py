"""Play scripted calls into a recorder: event times in seconds after ring start.

The monotonic reading is ``MONO0 + t``; the wall clock is the ring start's epoch plus
``t`` plus any clock step in effect (``steps``: from time t on, the wall clock is off
by s seconds), which is how a test changes the PC's clock during a call.
"""

from __future__ import annotations

from datetime import datetime

from offhook.metrics.store import CallRecorder

MONO0 = 86_400.0  # the PC has been up a day


def play(
    rec: CallRecorder,
    call_id: str,
    start: datetime,
    events: list[tuple[str, float]],
    *,
    agent: str = "ann",
    tz: str = "Europe/Berlin",
    direction: str = "inbound",
    number: str | None = None,
    steps: tuple[tuple[float, float], ...] = (),
) -> None:
    def wall(t: float) -> float:
        return start.timestamp() + t + sum(shift for at, shift in steps if t >= at)

    rec.ringing(call_id, agent=agent, direction=direction, number=number, tz=tz, wall=wall(0.0), mono=MONO0)
    for name, t in events:
        getattr(rec, name)(call_id, wall=wall(t), mono=MONO0 + t)
