"""Button × gesture × desk state → action: the daemon's reading of the table in hw/.

The unit only reports (button, gesture); what a gesture means depends on the call and
agent state, which only the daemon knows. Actions are Desk method names (``act``).
"""

from __future__ import annotations

from offhook import linkproto as L
from offhook.daemon.desk import Desk


def resolve(button: int, gesture: int, desk: Desk) -> str | None:
    """The action for a gesture in the desk's current state, or None (gesture unused)."""
    if desk.pairing and button == L.BUTTON_HOOK and desk.ringing is None and desk.active is None:
        return {L.GESTURE_SHORT: "approve_pairing", L.GESTURE_LONG: "refuse_pairing"}.get(gesture)
    if button == L.BUTTON_HOOK:
        if gesture == L.GESTURE_LONG and desk.ringing is not None:
            return "reject"
        return "hook" if gesture == L.GESTURE_SHORT else None
    if button == L.BUTTON_MUTE:
        return "mute" if gesture == L.GESTURE_SHORT else None
    if button == L.BUTTON_HOLD:
        return "hold" if gesture == L.GESTURE_SHORT else None
    if button == L.BUTTON_ESCALATE:
        return "escalate" if gesture == L.GESTURE_SHORT else None
    if button == L.BUTTON_STATE:
        if desk.agent == L.AGENT_WRAP_UP:
            return {L.GESTURE_SHORT: "end_wrap_up", L.GESTURE_DOUBLE: "extend_wrap_up"}.get(gesture)
        return {L.GESTURE_SHORT: "toggle_break", L.GESTURE_LONG: "go_offline"}.get(gesture)
    if button in (L.BUTTON_VOL_UP, L.BUTTON_VOL_DOWN):
        return "volume_up" if button == L.BUTTON_VOL_UP else "volume_down"
    return None
