"""Every scene in hw/scenes.md, set up through STATE frames on the link (or the unit's local
modes), gives the documented pattern on every lamp: checked on the PWM duty values the
firmware writes, sampled over time, against a reference written from the document alone."""

from __future__ import annotations

import json
import math
import re

import pytest

from offhook import linkproto as L
from offhook.vm import MicroPythonVM
from tests.conftest import REPO_ROOT
from tests.firmware import fw

SCENES_MD = REPO_ROOT / "hw" / "scenes.md"
LAMPS = ("hook", "mute", "hold", "escalate", "status")
# PWM channel -> (lamp, component); boards/sim.py LED_CHANNELS (component 3: mono).
CHANNELS = ((0, 3), (1, 3), (2, 3), (3, 3), (4, 0), (4, 1), (4, 2))
HID_BITS = {"off_hook": 0x01, "mute": 0x02, "ring": 0x04, "hold": 0x08}
FLAG_BITS = {name: bit for bit, name in L.STATE_FLAG_NAMES}
T0 = 1000  # the scene starts here
SAMPLE_MS = 50


def _table(title: str) -> list[list[str]]:
    """Rows of the markdown table that follows the heading or line containing ``title``."""
    lines = SCENES_MD.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|") and title in line)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


COLOURS = {name: int(rgb, 16) for name, rgb in _table("| colour | RGB |")}
SCENES = {row[0]: row[1:] for row in _table("| scene | set up |")}


def _breath(t: int, period: int) -> int:
    step = (t % period) * 64 // period
    return int(127.5 - 127.5 * math.cos(2 * math.pi * step / 64) + 0.5)


def level(pattern: str, t: int) -> int:
    """Brightness 0..255 of a pattern t ms after it started, from the Patterns table."""
    on = 255
    if pattern in ("off",):
        return 0
    if pattern in ("solid", "flash"):
        return on
    if pattern == "dim":
        return 42
    if pattern == "blink":
        return on if t % 1000 < 500 else 0
    if pattern == "fast":
        return on if t % 250 < 125 else 0
    if pattern == "ring":
        return on if t % 2000 < 300 or 450 <= t % 2000 < 750 else 0
    if pattern == "breathe":
        return _breath(t, 4000)
    if pattern == "waiting":
        return on if t % 1500 < 100 or 250 <= t % 1500 < 350 else 0
    if pattern == "remind":
        return on if t % 2000 < 500 and t % 200 < 100 else 0
    if pattern == "wink":
        return on if t % 2000 < 80 else 0
    if pattern == "pair":
        return _breath(t, 1000)
    if pattern == "ramp":
        return (t % 1000) * 255 // 1000
    if pattern == "notconf":
        return on if t < 500 and t % 200 < 100 else 0
    raise AssertionError(f"pattern {pattern!r} is not in the Patterns table")


def gamma(lit: int) -> int:
    return int(65535 * math.pow(lit / 255, 2.2) + 0.5)


def expected_duties(cells: list[str], t: int) -> list[int]:
    duties = []
    for lamp, comp in CHANNELS:
        cell = cells[lamp].split()
        pattern, colour = cell[0], COLOURS[cell[1]] if len(cell) > 1 else 0
        rgb = ((colour >> 16) & 0xFF, (colour >> 8) & 0xFF, colour & 0xFF)
        c = max(rgb) if comp == 3 else rgb[comp]
        duties.append(gamma(level(pattern, t) * c // 255))
    return duties


def _setup_code(setup: str) -> tuple[str, int, int]:
    """VM code that sets the scene up at T0; the time its pattern starts; how long it shows."""
    words = dict(word.split("=", 1) if "=" in word else (word, "") for word in setup.split())
    code = []
    start, window = T0, 4000
    if words.get("host") != "none" and "local" not in words:
        call = L.CALL_NAMES.index(words["call"])
        agent = L.AGENT_NAMES.index(words["agent"])
        flags = sum(FLAG_BITS[f] for f in words.get("flags", "").split(",") if f)
        code.append(f"send({fw.host_frame(L.STATE, L.encode_state(call, agent, flags, 0), 1)!r})")
    if "hid" in words:
        code.append(f"app.unit.hid = {sum(HID_BITS[h] for h in words['hid'].split(','))}")
    if words.get("local") == "updating":
        code.append("app.unit.updating = 1")
    if words.get("local") == "safe_mode":
        code.append("app.unit.safe_mode = 1")
    if "press" in words or "unconfirmed" in words:
        # STATE first, then a volume press (no lamp of its own) at T0; the host never ACKs it.
        code += [f"app.step({T0 - 10})", f"app.unit.pressed(app.session.event(5, 1, {T0}), {T0})"]
        window = 80
        if "unconfirmed" in words:
            start, window = T0 + 1000, 600
    return "\n".join(code), start, window


@pytest.mark.parametrize("scene", list(SCENES))
def test_scene(mpvm: MicroPythonVM, scene: str) -> None:
    setup, *cells = SCENES[scene]
    assert len(cells) == len(LAMPS)
    fw.boot(mpvm, config=b'{"brightness": 100}', at=0)
    code, start, window = _setup_code(setup)
    samples = list(range(start + 5, start + window, SAMPLE_MS if window > 100 else 10))
    mpvm.run(code).check()
    out = mpvm.run(
        f"samples = {samples!r}\nseen = []\n"
        f"for t in range({T0}, {start + window}, 5):\n"
        "    app.step(t)\n"
        "    if t in samples:\n"
        "        seen.append(duties())\n"
        "print(seen)"
    ).check()
    got = json.loads(out)
    assert len(got) == len(samples)
    for t, duties in zip(samples, got, strict=True):
        want = expected_duties(cells, t - start)
        # Gamma is computed in floats on the unit (single precision on a board): allow 2/65535.
        assert all(abs(g - w) <= 2 and (g == 0) == (w == 0) for g, w in zip(duties, want, strict=True)), (
            f"{scene} at +{t - start} ms: PWM duties {duties}, expected {want}"
        )


def test_every_flag_and_state_has_a_scene() -> None:
    setups = " ".join(row[0] for row in SCENES.values())
    for name in L.CALL_NAMES:
        assert f"call={name}" in setups
    for name in L.AGENT_NAMES:
        assert f"agent={name}" in setups
    for _, name in L.STATE_FLAG_NAMES:
        assert re.search(rf"flags=\S*\b{name}\b", setups), name


def test_pattern_numbers_agree() -> None:
    """scenes.py and leds.py each inline the pattern numbers as private const()s."""
    firmware = REPO_ROOT / "firmware" / "offhook_fw"
    found = [
        dict(re.findall(r"^_([A-Z]+) = const\((\d+)\)", (firmware / name).read_text(), re.M))
        for name in ("scenes.py", "leds.py")
    ]
    patterns = [row[0] for row in _table("| pattern | looks like |")]
    for name, number in found[1].items():
        if name.isupper() and name.lower() in patterns:
            assert found[0][name] == number, name
            assert patterns.index(name.lower()) == int(number), name
    assert sorted(p.upper() for p in patterns) == sorted(n for n in found[1] if n.lower() in patterns)


def test_brightness_scales_before_gamma(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm, config=b'{"brightness": 50}')
    state = fw.host_frame(L.STATE, L.encode_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, 0, 0), 1)
    duties = json.loads(mpvm.run(f"send({state!r})\napp.step(10)\nprint(duties())").check())
    assert abs(duties[0] - gamma(127)) <= 2  # hook solid at half level
    assert abs(duties[4] - gamma(127)) <= 2 and duties[5] == 0 and duties[6] == 0  # status red
