"""A daemon stand-in for the crash test: records calls as fast as it can, forever.

Started as ``python -m tests.metrics.crash_writer DB``. It first resumes every call a
previous (killed) writer left in progress, as a restarted daemon would: it looks the
call up by Call-ID, sends its ring again (ignored: already known) and carries on from
the state it finds. Then it records new calls. After the last event of a call
returned (the call is durable), it prints ``done CALL-ID``.
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

from offhook.metrics.store import CallRecorder, OpenCall

EVENTS = ("answered", "hold_started", "hold_ended", "hold_started", "hold_ended", "hung_up", "wrap_up_ended")


def record(rec: CallRecorder, call_id: str, events: tuple[str, ...] = EVENTS) -> None:
    ring_mono = time.monotonic()
    rec.ringing(
        call_id,
        agent="ann",
        direction="inbound",
        number="+4930123",
        tz="Europe/Berlin",
        wall=time.time(),
        mono=ring_mono,
    )
    for i, name in enumerate(events, 1):
        getattr(rec, name)(call_id, wall=time.time(), mono=ring_mono + i)
    print(f"done {call_id}", flush=True)


def remaining(call: OpenCall) -> tuple[str, ...]:
    if not call.answered:
        return EVENTS
    if call.hung_up:
        return ("wrap_up_ended",)
    return ("hold_ended", "hung_up", "wrap_up_ended") if call.on_hold else ("hung_up", "wrap_up_ended")


def main(path: Path) -> None:
    with CallRecorder(path) as rec:
        for call in rec.open_calls():
            record(rec, call.call_id, remaining(call))
        first = rec.conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        for n in itertools.count(first):
            record(rec, f"call-{n}@pbx")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
