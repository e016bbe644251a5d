"""The desk's side of recording: the gesture, the API action, the STATE flags, the alert."""

from __future__ import annotations

from offhook import linkproto as L
from offhook.actions import Action
from offhook.daemon.desk import Desk, Effect, Notice, UnitState
from offhook.softphone.base import EventKind, SoftphoneEvent


def ev(kind: EventKind, call_id: str) -> SoftphoneEvent:
    return SoftphoneEvent(kind, call_id, f"sip:{call_id}@x", "inbound")


def notices(effects: list[Effect]) -> list[tuple[str, dict]]:
    return [(e.name, e.data) for e in effects if isinstance(e, Notice) and not e.log_only]


def flags(effects: list[Effect]) -> int | None:
    found = [e.flags for e in effects if isinstance(e, UnitState)]
    return found[-1] if found else None


RECORDING_BITS = L._STATE_RECORDING | L._STATE_RECORDING_PAUSED | L._STATE_RECORDING_FAILED


def on_call(desk: Desk) -> None:
    desk.softphone_event(ev(EventKind.INCOMING, "c1"), 0)
    desk.softphone_event(ev(EventKind.ESTABLISHED, "c1"), 1)


def test_mute_long_pauses_and_the_lamp_follows_the_recorder() -> None:
    desk = Desk()
    on_call(desk)
    assert desk.unit_state().flags & RECORDING_BITS == 0  # not recorded: the plain call scene
    effects = desk.recording_changed("c1", "on", 2)
    assert flags(effects) == L._STATE_RECORDING and notices(effects) == [("recording", {"call": "c1", "state": "on"})]
    effects = desk.press(L.BUTTON_MUTE, L.GESTURE_LONG, 3)
    assert notices(effects) == [("recording_pause", {"call": "c1", "paused": True})]
    assert flags(effects) is None  # a press is a request: nothing shown until the recorder confirms
    effects = desk.recording_changed("c1", "paused", 3.1)
    assert flags(effects) == L._STATE_RECORDING | L._STATE_RECORDING_PAUSED
    assert desk.snapshot()["recording"] == "paused"
    effects = desk.act(Action.TOGGLE_RECORDING_PAUSE, 4)  # the API action: resume
    assert notices(effects) == [("recording_pause", {"call": "c1", "paused": False})]
    assert flags(desk.recording_changed("c1", "on", 4.1)) == L._STATE_RECORDING


def test_short_mute_still_mutes() -> None:
    desk = Desk()
    on_call(desk)
    desk.recording_changed("c1", "on", 2)
    effects = desk.press(L.BUTTON_MUTE, L.GESTURE_SHORT, 3)
    assert [n for n, _ in notices(effects)] == [] and desk.mute_pending_until is not None


def test_failure_alerts_and_shows_until_the_call_ends() -> None:
    desk = Desk()
    on_call(desk)
    desk.recording_changed("c1", "on", 2)
    effects = desk.recording_changed("c1", "failed", 5, reason="disk full")
    assert notices(effects) == [("recording_failed", {"call": "c1", "state": "failed", "reason": "disk full"})]
    assert flags(effects) == L._STATE_RECORDING_FAILED
    refused = notices(desk.press(L.BUTTON_MUTE, L.GESTURE_LONG, 6))
    assert refused == [
        ("refused", {"action": "toggle_recording_pause", "reason": "this call's recording stopped on an error"})
    ]
    effects = desk.softphone_event(ev(EventKind.CLOSED, "c1"), 9)
    assert flags(effects) is not None and flags(effects) & RECORDING_BITS == 0
    assert desk.recording == {} and desk.snapshot()["recording"] == "off"


def test_refused_without_a_recorded_call() -> None:
    desk = Desk()
    assert notices(desk.act("toggle_recording_pause", 0))[0][1]["reason"] == "this call is not being recorded"
    on_call(desk)
    assert notices(desk.press(L.BUTTON_MUTE, L.GESTURE_LONG, 2))[0][0] == "refused"
    assert desk.recording_changed("unknown", "on", 3) == []  # a call the desk does not know: ignored


def test_held_call_keeps_its_recording_flag() -> None:
    desk = Desk()
    on_call(desk)
    desk.recording_changed("c1", "on", 2)
    effects = desk.softphone_event(ev(EventKind.HELD, "c1"), 3)
    state = [e for e in effects if isinstance(e, UnitState)][-1]
    assert state.call == L.CALL_HELD and state.flags & L._STATE_RECORDING
