"""One action table: hw/actions.md, offhook.actions, the firmware's double-press default and
the daemon's resolver all agree."""

from __future__ import annotations

import itertools
import json

from offhook import actions
from offhook import linkproto as L
from offhook.vm import MicroPythonVM
from tests.conftest import REPO_ROOT
from tests.firmware import fw


def test_markdown_is_the_table() -> None:
    lines = (REPO_ROOT / "hw" / "actions.md").read_text().splitlines()
    start = lines.index("| button | gesture | when | action | meaning |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(tuple(cell.strip() for cell in line.strip("|").split("|")))
    assert rows == [tuple(rule) for rule in actions.TABLE]


def test_names_are_linkproto_names() -> None:
    for rule in actions.TABLE:
        assert rule.button in L.BUTTON_NAMES
        assert rule.gesture == "any" or rule.gesture in L.GESTURE_NAMES.values()
        assert rule.when in actions.WHEN


def test_firmware_double_press_default(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm)
    default = json.loads(mpvm.run("import json\nprint(json.dumps(app.store.config['double_press']))").check())
    assert sorted(default) == actions.double_press_buttons()


def test_daemon_resolves_like_the_table() -> None:
    from offhook.daemon.desk import CallView, Desk, Notice

    for button, gesture, pairing, ringing, active, agent, hid in itertools.product(
        range(len(L.BUTTON_NAMES)),
        L.GESTURE_NAMES,
        (False, True),
        (False, True),
        (False, True),
        range(len(L.AGENT_NAMES)),
        (False, True),
    ):
        desk = Desk(hid_softphone=hid)
        desk.hid_leds = L.HID_LED_RING if hid else 0
        desk.pairing, desk.agent = pairing, agent
        if ringing:
            desk.calls["r"] = CallView("r", "sip:r@x", "inbound", "ringing", 0.0)
        if active:
            desk.calls["a"] = CallView("a", "sip:a@x", "inbound", "active", 0.0, answered_at=0.0)
        now = actions.situations(
            pairing=pairing and not ringing and not active,
            ringing=ringing,
            wrap_up=agent == L.AGENT_WRAP_UP,
            hid_call=hid,
        )
        pressed = desk.press(button, gesture, 1.0)[0]
        assert isinstance(pressed, Notice) and pressed.log_only
        assert pressed.data["action"] == (actions.lookup(button, gesture, now) or "nothing"), (
            L.BUTTON_NAMES[button],
            L.GESTURE_NAMES[gesture],
            (pairing, ringing, active, agent, hid),
        )


def test_a_hid_call_takes_the_short_hook_mute_and_hold_presses_only() -> None:
    """While a configured HID softphone rings or has a call, the presses the unit sent it as HID
    reports (short hook, mute, hold) do nothing more in the daemon; everything else is unchanged."""
    hid = actions.situations(pairing=False, ringing=True, wrap_up=False, hid_call=True)
    own = actions.situations(pairing=False, ringing=True, wrap_up=False)
    for button in range(len(L.BUTTON_NAMES)):
        for gesture in L.GESTURE_NAMES:
            taken = L.BUTTON_NAMES[button] in ("hook", "mute", "hold") and gesture == L.GESTURE_SHORT
            expected = "to_hid_softphone" if taken else actions.lookup(button, gesture, own)
            assert actions.lookup(button, gesture, hid) == expected
    assert actions.lookup(L.BUTTON_HOOK, L.GESTURE_LONG, hid) == "reject"  # long press: no HID report went out
