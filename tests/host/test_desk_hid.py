"""The desk folds in what a HID softphone set on the unit's LED outputs (HID_LEDS), and leaves it
the presses it acts on (hw/hid.md, "Who controls the call"). Pure: no I/O, time passed in."""

from __future__ import annotations

from offhook import linkproto as L
from offhook.daemon.desk import Command, Desk, Effect, Notice, UnitState
from offhook.softphone.base import EventKind, SoftphoneEvent

OFF_HOOK, MUTE, RING, HOLD = L.HID_LED_OFF_HOOK, L.HID_LED_MUTE, L.HID_LED_RING, L.HID_LED_HOLD
AVAILABLE, ON_CALL = L.AGENT_AVAILABLE, L.AGENT_ON_CALL


def ev(kind: EventKind, call_id: str = "c1") -> SoftphoneEvent:
    return SoftphoneEvent(kind, call_id, "sip:customer@x", "inbound", "")


def states(effects: list[Effect]) -> list[UnitState]:
    return [e for e in effects if isinstance(e, UnitState)]


def shown(desk: Desk, leds: int, now: float = 1.0) -> tuple[int, int, int]:
    """(call, agent, flags) the unit is sent after the HID softphone set ``leds``."""
    desk.hid_softphone_leds(leds, now)
    state = desk.unit_state()
    return state.call, state.agent, state.flags & ~L.STATE_HID_SOFTPHONE


def own_call(desk: Desk, state: str, now: float = 0.0) -> None:
    desk.softphone_event(ev(EventKind.INCOMING), now)
    if state in ("active", "held"):
        desk.softphone_event(ev(EventKind.ESTABLISHED), now + 1)
    if state == "held":
        desk.softphone_event(ev(EventKind.HELD), now + 2)


def resolve(button: int, gesture: int, desk: Desk) -> str | None:
    """The action the desk picks for a gesture (its "pressed" log notice), without carrying it out."""
    probe = Desk(desk.timers, hid_softphone=desk.hid_softphone)
    probe.calls, probe.hid_leds, probe.agent, probe.pairing = dict(desk.calls), desk.hid_leds, desk.agent, desk.pairing
    action = probe.press(button, gesture, 0.0)[0].data["action"]  # type: ignore[union-attr]
    return None if action == "nothing" else str(action)


def press(desk: Desk, button: int, gesture: int = L.GESTURE_SHORT, now: float = 10.0) -> list[Effect]:
    assert resolve(button, gesture, desk) is not None
    return [e for e in desk.press(button, gesture, now) if not (isinstance(e, Notice) and e.log_only)]


def test_without_our_call_the_lamps_show_the_hid_softphones_call() -> None:
    desk = Desk()
    assert shown(desk, RING) == (L.CALL_RINGING, AVAILABLE, 0)
    assert shown(desk, OFF_HOOK) == (L.CALL_ACTIVE, AVAILABLE, 0)  # the agent state stays ours
    assert shown(desk, OFF_HOOK | MUTE) == (L.CALL_ACTIVE, AVAILABLE, L.STATE_MUTED)
    assert shown(desk, OFF_HOOK | HOLD | MUTE) == (L.CALL_HELD, AVAILABLE, L.STATE_MUTED)
    assert shown(desk, HOLD) == (L.CALL_HELD, AVAILABLE, 0)  # a softphone that clears Off-Hook on hold
    assert shown(desk, OFF_HOOK | RING) == (L.CALL_ACTIVE, AVAILABLE, L.STATE_CALL_WAITING)  # its second call
    assert shown(desk, MUTE) == (L.CALL_IDLE, AVAILABLE, 0)  # a Mute LED without a call is no call
    assert shown(desk, 0) == (L.CALL_IDLE, AVAILABLE, 0)
    assert desk.snapshot()["hid_softphone"] == {"call": "idle", "muted": False}


def test_a_change_gives_one_state_and_one_notice_a_repeat_nothing() -> None:
    desk = Desk()
    effects = desk.hid_softphone_leds(RING, 1.0)
    assert states(effects) == [UnitState(L.CALL_RINGING, AVAILABLE, 0, 0)]
    notice = next(e for e in effects if isinstance(e, Notice))
    assert (notice.name, notice.data) == ("hid_softphone", {"call": "ringing", "muted": False})
    assert desk.hid_softphone_leds(RING, 2.0) == []
    # mute while it rings: the HID softphone's state changed (notice), the unit's lamps did not (no STATE)
    effects = desk.hid_softphone_leds(RING | MUTE, 3.0)
    assert states(effects) == [] and [e.name for e in effects if isinstance(e, Notice)] == ["hid_softphone"]


def test_our_call_wins_and_a_ringing_hid_softphone_waits() -> None:
    desk = Desk()
    own_call(desk, "active")
    assert shown(desk, RING) == (L.CALL_ACTIVE, ON_CALL, L.STATE_CALL_WAITING)
    assert shown(desk, OFF_HOOK | MUTE) == (L.CALL_ACTIVE, ON_CALL, 0)  # its mute is not our call's
    desk.softphone_event(ev(EventKind.HELD), 5)
    assert shown(desk, RING) == (L.CALL_HELD, ON_CALL, L.STATE_CALL_WAITING)
    ringing = Desk()
    own_call(ringing, "ringing")
    assert shown(ringing, RING) == (L.CALL_RINGING, AVAILABLE, 0)  # both ring: ours shows, nothing waits


def test_when_our_call_ends_the_hid_softphones_call_shows() -> None:
    desk = Desk()
    own_call(desk, "active")
    desk.hid_softphone_leds(OFF_HOOK | HOLD, 3.0)
    effects = desk.softphone_event(ev(EventKind.CLOSED), 60.0)
    assert states(effects)[-1].call == L.CALL_HELD and states(effects)[-1].agent == L.AGENT_WRAP_UP


def test_a_reconnect_forgets_the_hid_leds_until_the_unit_reports_them() -> None:
    desk = Desk()
    desk.hid_softphone_leds(OFF_HOOK, 1.0)
    assert desk.full_state(2.0).call == L.CALL_IDLE
    assert desk.hid_leds == 0


def test_configured_hid_softphone_with_a_call_takes_hook_mute_and_hold() -> None:
    """Our call active, the HID softphone rings: the unit sent the hook press to the HID softphone
    (which answers there); the daemon must not also hang up ours. Mute and hold likewise."""
    desk = Desk(hid_softphone=True)
    own_call(desk, "active")
    desk.hid_softphone_leds(RING, 5.0)
    for button in (L.BUTTON_HOOK, L.BUTTON_MUTE, L.BUTTON_HOLD):
        effects = press(desk, button)
        assert [e for e in effects if isinstance(e, Command)] == []
        assert [e.name for e in effects if isinstance(e, Notice)] == ["left_to_hid_softphone"]
    # a long hook press went out as no HID report; nothing of ours rings, so it means nothing
    assert resolve(L.BUTTON_HOOK, L.GESTURE_LONG, desk) is None
    # the HID call is over (LEDs off): the buttons are ours again
    desk.hid_softphone_leds(0, 20.0)
    assert [(e.op, e.call_id) for e in press(desk, L.BUTTON_HOOK) if isinstance(e, Command)] == [("hangup", "c1")]


def test_configured_hid_softphone_ringing_alone_our_ringing_call_is_not_answered_too() -> None:
    desk = Desk(hid_softphone=True)
    own_call(desk, "ringing")
    desk.hid_softphone_leds(RING, 1.0)
    assert [e for e in press(desk, L.BUTTON_HOOK) if isinstance(e, Command)] == []
    # the long press was never sent over HID: it still rejects our ringing call
    assert [(e.op, e.call_id) for e in press(desk, L.BUTTON_HOOK, L.GESTURE_LONG) if isinstance(e, Command)] == [
        ("reject", "c1")
    ]


def test_without_hid_softphone_configured_presses_are_ours_as_before() -> None:
    desk = Desk()  # the unit suppresses its HID inputs: nothing went to the HID softphone
    own_call(desk, "active")
    desk.hid_softphone_leds(RING | OFF_HOOK, 5.0)
    assert [(e.op, e.call_id) for e in press(desk, L.BUTTON_HOOK) if isinstance(e, Command)] == [("hangup", "c1")]
    assert [(e.op, e.arg) for e in press(desk, L.BUTTON_MUTE, now=11) if isinstance(e, Command)] == [("mute", True)]
    assert [e.op for e in press(desk, L.BUTTON_HOLD, now=12) if isinstance(e, Command)] == ["hold"]


def test_a_mute_led_alone_does_not_take_the_buttons() -> None:
    desk = Desk(hid_softphone=True)
    own_call(desk, "active")
    desk.hid_softphone_leds(MUTE, 5.0)  # muted between calls: the HID softphone has no call
    assert [e.op for e in press(desk, L.BUTTON_MUTE) if isinstance(e, Command)] == ["mute"]
