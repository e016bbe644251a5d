"""Scripted button sequences with bounce noise and explicit time give exactly the expected EVENTs.

The firmware runs on the MicroPython VM with the simulated board; levels are set on the
simulated pins (active low: 0 = pressed) and ``app.step(t)`` runs every millisecond.
"""

from __future__ import annotations

import pytest

from offhook.vm import MicroPythonVM
from tests.firmware import fw

HOOK, MUTE, HOLD, ESCALATE, STATE, VOL_UP, VOL_DOWN = range(7)
DOWN, UP = 0, 1


def bouncy_press(t: int, key: int, length: int, bounce: tuple[int, ...] = (0, 2, 3, 5, 6)) -> list:
    """Press at t with contact bounce, release at t+length with bounce too (as edges)."""
    edges = []
    for i, dt in enumerate(bounce):
        edges.append((t + dt, key, DOWN if i % 2 == 0 else UP))
    for i, dt in enumerate(bounce):
        edges.append((t + length + dt, key, UP if i % 2 == 0 else DOWN))
    return edges


def run_script(vm: MicroPythonVM, script: list, end: int, config: bytes | None = None) -> list:
    fw.boot(vm, config)
    script = sorted(script)
    vm.run(f"drive({script!r}, 1, {end})").check()
    return fw.events(fw.take_frames(vm))


# Bounce settles 6 ms after each edge; the level must then hold 20 ms (default debounce).
CASES = {
    "short press": (bouncy_press(100, HOOK, 150), 1000, [("hook", "short", 276)]),
    "long press": (bouncy_press(100, HOOK, 1200), 2000, [("hook", "long", 926)]),
    "long press, release long after": (bouncy_press(100, MUTE, 3000), 4000, [("mute", "long", 926)]),
    "state short waits for double window": (bouncy_press(100, STATE, 100), 1000, [("state", "short", 526)]),
    "state double press": (
        bouncy_press(100, STATE, 100) + bouncy_press(300, STATE, 100),
        1200,
        [("state", "double", 426)],
    ),
    "state long press": (bouncy_press(100, STATE, 1000), 1500, [("state", "long", 926)]),
    "hook pressed twice quickly: two shorts, no double": (
        bouncy_press(100, HOOK, 100) + bouncy_press(300, HOOK, 100),
        1000,
        [("hook", "short", 226), ("hook", "short", 426)],
    ),
    "two buttons at once": (
        bouncy_press(100, HOLD, 100) + bouncy_press(110, ESCALATE, 900),
        1500,
        [("hold", "short", 226), ("escalate", "long", 936)],
    ),
    "volume": (
        bouncy_press(100, VOL_UP, 60) + bouncy_press(400, VOL_DOWN, 60),
        800,
        [
            ("vol_up", "short", 186),
            ("vol_down", "short", 486),
        ],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_sequences(mpvm: MicroPythonVM, name: str) -> None:
    script, end, expected = CASES[name]
    assert run_script(mpvm, script, end) == expected


def test_chatter_is_rejected(mpvm: MicroPythonVM) -> None:
    """Contacts that never stay put for the debounce time produce nothing."""
    script = []
    for t in range(100, 600, 15):  # 8 ms low, 7 ms high, for half a second
        script += [(t, HOOK, DOWN), (t + 8, HOOK, UP)]
    for t in range(100, 600, 19):  # 19 ms cycles: still under 20 ms either way
        script += [(t, MUTE, DOWN), (t + 10, MUTE, UP)]
    assert run_script(mpvm, script, 1500) == []


def test_single_glitch_is_rejected(mpvm: MicroPythonVM) -> None:
    script = [(100, HOOK, DOWN), (119, HOOK, UP), (300, MUTE, DOWN), (301, MUTE, UP)]
    assert run_script(mpvm, script, 800) == []


def test_config_changes_timing(mpvm: MicroPythonVM) -> None:
    """debounce 50 ms, long press 400 ms, hook also double-press capable."""
    config = b'{"debounce_ms": 50, "long_press_ms": 400, "double_press_ms": 250, "double_press": ["hook", "state"]}'
    script = [
        (100, HOOK, DOWN),
        (140, HOOK, UP),  # 40 ms: under the new debounce, ignored
        *bouncy_press(300, HOOK, 500),  # long at 306 + 50 + 400
        *bouncy_press(1000, HOOK, 100),  # short, after the 250 ms double window
        *bouncy_press(1600, HOOK, 100),
        *bouncy_press(1800, HOOK, 100),  # double
    ]
    assert run_script(mpvm, script, 2500, config) == [
        ("hook", "long", 756),
        ("hook", "short", 1406),
        ("hook", "double", 1956),
    ]


def test_button_map_remaps_inputs(mpvm: MicroPythonVM) -> None:
    config = b'{"button_map": ["mute", "hook", "hold", "escalate", "state", "none", "vol_down"]}'
    script = bouncy_press(100, HOOK, 100) + bouncy_press(400, MUTE, 100) + bouncy_press(700, VOL_UP, 100)
    assert run_script(mpvm, script, 1200, config) == [("mute", "short", 226), ("hook", "short", 526)]


def test_poll_every_5ms_like_the_board(mpvm: MicroPythonVM) -> None:
    """At the real scan period times quantise to 5 ms but the gestures are the same."""
    fw.boot(mpvm)
    script = sorted(bouncy_press(100, HOOK, 150) + bouncy_press(500, STATE, 100) + bouncy_press(650, STATE, 100))
    mpvm.run(f"drive({script!r}, 0, 1500, 5)").check()
    assert fw.events(fw.take_frames(mpvm)) == [("hook", "short", 280), ("state", "double", 780)]
