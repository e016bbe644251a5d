"""Resolve a gesture to a Desk action with the one table in offhook.actions (hw/actions.md).

The unit only reports (button, gesture); the daemon knows the situation (pairing,
ringing, wrap-up) that picks the table's rule.
"""

from __future__ import annotations

from offhook import actions
from offhook import linkproto as L
from offhook.daemon.desk import Desk


def resolve(button: int, gesture: int, desk: Desk) -> str | None:
    """The action for a gesture in the desk's current state, or None (gesture unused)."""
    idle = desk.ringing is None and desk.active is None
    now = actions.situations(
        pairing=desk.pairing and idle,
        ringing=desk.ringing is not None,
        wrap_up=desk.agent == L.AGENT_WRAP_UP,
        hid_call=desk.hid_owns_buttons,
    )
    return actions.lookup(button, gesture, now)
