"""The recording scenes on the VM beyond hw/scenes.md's rows (which test_scenes checks): which of
the three recording flags wins, and that a host predating them gets the plain call scene."""

from __future__ import annotations

import json

from offhook import linkproto as L
from offhook.vm import MicroPythonVM
from tests.firmware import fw
from tests.firmware.test_scenes import expected_duties

ON_CALL = ["solid green", "off", "off", "off"]


def _duties(mpvm: MicroPythonVM, flags: int, times: list[int]) -> list[list[int]]:
    fw.boot(mpvm, config=b'{"brightness": 100}', at=0)
    state = fw.host_frame(L.STATE, L.encode_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, flags, 0), 1)
    mpvm.run(f"send({state!r})").check()
    out = mpvm.run(
        f"seen = []\nfor t in range(1000, {max(times) + 1}, 5):\n"
        "    app.step(t)\n"
        f"    if t in {times!r}:\n"
        "        seen.append(duties())\nprint(seen)"
    ).check()
    return json.loads(out)


def _check(got: list[list[int]], times: list[int], status: str) -> None:
    for t, duties in zip(times, got, strict=True):
        want = expected_duties([*ON_CALL, status], t - 1000)
        assert all(abs(g - w) <= 2 and (g == 0) == (w == 0) for g, w in zip(duties, want, strict=True)), (
            status,
            t,
            duties,
            want,
        )


TIMES = [1005, 1100, 1300, 1600, 2200, 2700, 3100]


def test_failed_wins_over_paused_and_recording(mpvm: MicroPythonVM) -> None:
    flags = L._STATE_RECORDING | L._STATE_RECORDING_PAUSED | L._STATE_RECORDING_FAILED
    _check(_duties(mpvm, flags, TIMES), TIMES, "fast red")


def test_paused_wins_over_recording(mpvm: MicroPythonVM) -> None:
    _check(_duties(mpvm, L._STATE_RECORDING | L._STATE_RECORDING_PAUSED, TIMES), TIMES, "blink amber")


def test_a_host_without_the_flags_gets_the_plain_call_scene(mpvm: MicroPythonVM) -> None:
    """What the previous host release sends during a call (no recording bits): steady red."""
    _check(_duties(mpvm, 0, TIMES), TIMES, "solid red")
