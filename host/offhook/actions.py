"""Button x gesture x desk situation -> action: the one table, as data.

The desk unit only reports (button, gesture) in EVENT frames; what a gesture means depends
on the call and agent state, which only the daemon knows. ``TABLE`` is read top to bottom
and the first matching rule wins. hw/actions.md is the same table for people, and the
firmware's default ``double_press`` config lists exactly the buttons with a double rule
(tests check all of these agree, and that the daemon resolves gestures the same way).
Actions are ``Action`` members, which the Desk carries out.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from offhook import linkproto as L


class Action(StrEnum):
    """What the agent asks of the desk: from a gesture through ``TABLE``, or from the API."""

    HOOK = "hook"  # answer a ringing call, else hang up (or leave a consult)
    ANSWER = "answer"
    REJECT = "reject"
    HANGUP = "hangup"
    HOLD = "hold"
    MUTE = "mute"
    ESCALATE = "escalate"
    TOGGLE_BREAK = "toggle_break"
    GO_OFFLINE = "go_offline"
    END_WRAP_UP = "end_wrap_up"
    EXTEND_WRAP_UP = "extend_wrap_up"
    APPROVE_PAIRING = "approve_pairing"
    REFUSE_PAIRING = "refuse_pairing"
    VOLUME_UP = "volume_up"
    VOLUME_DOWN = "volume_down"
    TO_HID_SOFTPHONE = "to_hid_softphone"
    TOGGLE_RECORDING_PAUSE = "toggle_recording_pause"  # pause / resume the call's recording


# Situations a rule can require; "any" matches always. "hid_call": a configured HID softphone
# (softphone.hid_softphone) rings or has a call, so the unit sent the press to it as a HID report.
WHEN = ("hid_call", "pairing", "ringing", "wrap_up", "not_wrap_up", "any")


class Rule(NamedTuple):
    button: str  # linkproto.BUTTON_NAMES
    gesture: str  # linkproto.GESTURE_NAMES values, or "any"
    when: str  # one of WHEN
    action: Action
    meaning: str


TABLE: tuple[Rule, ...] = (
    Rule("hook", "short", "hid_call", Action.TO_HID_SOFTPHONE, "nothing more: the HID softphone answers or hangs up"),
    Rule("mute", "short", "hid_call", Action.TO_HID_SOFTPHONE, "nothing more: the HID softphone mutes"),
    Rule("hold", "short", "hid_call", Action.TO_HID_SOFTPHONE, "nothing more: the HID softphone holds"),
    Rule("hook", "short", "pairing", Action.APPROVE_PAIRING, "approve the pairing request (unit idle)"),
    Rule("hook", "long", "pairing", Action.REFUSE_PAIRING, "refuse the pairing request (unit idle)"),
    Rule("hook", "long", "ringing", Action.REJECT, "reject the ringing call"),
    Rule("hook", "short", "any", Action.HOOK, "answer a ringing call, hang up the active one"),
    Rule("mute", "long", "any", Action.TOGGLE_RECORDING_PAUSE, "pause / resume the call's recording (card numbers)"),
    Rule("mute", "short", "any", Action.MUTE, "mute / unmute the microphone"),
    Rule("hold", "short", "any", Action.HOLD, "hold / resume the call"),
    Rule("escalate", "short", "any", Action.ESCALATE, "consult the supervisor, then transfer"),
    Rule("state", "short", "wrap_up", Action.END_WRAP_UP, "end wrap-up now"),
    Rule("state", "double", "wrap_up", Action.EXTEND_WRAP_UP, "extend wrap-up"),
    Rule("state", "short", "not_wrap_up", Action.TOGGLE_BREAK, "available <-> break"),
    Rule("state", "long", "not_wrap_up", Action.GO_OFFLINE, "go offline"),
    Rule("vol_up", "any", "any", Action.VOLUME_UP, "headset volume up"),
    Rule("vol_down", "any", "any", Action.VOLUME_DOWN, "headset volume down"),
)


def situations(*, pairing: bool, ringing: bool, wrap_up: bool, hid_call: bool = False) -> set[str]:
    """The WHEN names true for a desk. Pairing only counts while the unit is otherwise idle."""
    found = {"any", "wrap_up" if wrap_up else "not_wrap_up"}
    if hid_call:
        found.add("hid_call")
    if pairing:
        found.add("pairing")
    if ringing:
        found.add("ringing")
    return found


def lookup(button: int, gesture: int, now: set[str]) -> Action | None:
    """The action for a gesture, given the situations true now (see ``situations``)."""
    button_name = L.BUTTON_NAMES[button]
    gesture_name = L.GESTURE_NAMES[gesture]
    for rule in TABLE:
        if rule.button == button_name and rule.gesture in (gesture_name, "any") and rule.when in now:
            return rule.action
    return None


def double_press_buttons() -> list[str]:
    """Buttons whose short press must wait for a possible second press."""
    return sorted({rule.button for rule in TABLE if rule.gesture == "double"})
