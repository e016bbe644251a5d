"""Truth first: every answered call's record completes, and the unit claims only what the
softphone confirmed, also across a daemon restart (the desk's side; the store's side is in
tests/metrics/test_restart.py and the whole path in tests/integration/test_restart_truth.py)."""

from __future__ import annotations

from offhook import linkproto as L
from offhook.daemon.desk import Command, Desk, Effect, Record, Timers, UnitState
from offhook.softphone.base import Call, CallState, EventKind, SoftphoneEvent


def ev(kind: EventKind, call_id: str, reason: str = "") -> SoftphoneEvent:
    return SoftphoneEvent(kind, call_id, f"sip:{call_id}@x", "inbound", reason)


def moments(effects: list[Effect]) -> list[tuple[str, str]]:
    return [(e.moment, e.call_id) for e in effects if isinstance(e, Record)]


def states(effects: list[Effect]) -> list[UnitState]:
    return [e for e in effects if isinstance(e, UnitState)]


def call_in_wrap_up(desk: Desk, call_id: str, at: float) -> None:
    desk.softphone_event(ev(EventKind.INCOMING, call_id), at)
    desk.softphone_event(ev(EventKind.ESTABLISHED, call_id), at + 1)
    desk.softphone_event(ev(EventKind.CLOSED, call_id), at + 10)
    assert desk.agent == L.AGENT_WRAP_UP


def test_a_call_answered_during_wrap_up_ends_the_last_calls_wrap_up_record() -> None:
    desk = Desk(Timers(wrap_up_s=30))
    call_in_wrap_up(desk, "c1", 0)
    desk.softphone_event(ev(EventKind.INCOMING, "c2"), 15)
    effects = desk.softphone_event(ev(EventKind.ESTABLISHED, "c2"), 16)
    assert moments(effects) == [("wrap_up_ended", "c1"), ("answered", "c2")]


def test_a_held_call_whose_customer_hangs_up_beside_another_call_completes() -> None:
    desk = Desk()
    desk.softphone_event(ev(EventKind.INCOMING, "c1"), 0)
    desk.softphone_event(ev(EventKind.ESTABLISHED, "c1"), 1)
    desk.softphone_event(ev(EventKind.INCOMING, "c2"), 5)
    desk.softphone_event(ev(EventKind.ESTABLISHED, "c2"), 6)  # c1 goes on hold
    effects = desk.softphone_event(ev(EventKind.CLOSED, "c1"), 20)
    assert moments(effects) == [("hold_ended", "c1"), ("hung_up", "c1"), ("wrap_up_ended", "c1")]
    assert desk.agent == L.AGENT_ON_CALL  # still talking to c2


def test_every_way_out_of_wrap_up_records_its_end() -> None:
    for leave in ("go_offline", "toggle_break", "ring_timeout", "api_break"):
        desk = Desk(Timers(wrap_up_s=60, ring_timeout_s=5))
        call_in_wrap_up(desk, "c1", 0)
        if leave == "ring_timeout":
            desk.softphone_event(ev(EventKind.INCOMING, "c2"), 12)
            effects = desk.tick(18)
        elif leave == "api_break":
            effects = desk.set_agent_state("break", 12)
        else:
            effects = desk.act(leave, 12)
        assert ("wrap_up_ended", "c1") in moments(effects), leave
        assert desk.agent != L.AGENT_WRAP_UP


def test_two_answered_calls_gone_in_one_snapshot_both_complete() -> None:
    desk = Desk(Timers(wrap_up_s=30))
    for call_id in ("c1", "c2"):
        desk.softphone_event(ev(EventKind.INCOMING, call_id), 0)
        desk.softphone_event(ev(EventKind.ESTABLISHED, call_id), 1)
    effects = desk.softphone_event(SoftphoneEvent(EventKind.CONNECTED, calls=[]), 20)  # baresip restarted
    effects += desk.tick(60)
    ended = [call for moment, call in moments(effects) if moment == "wrap_up_ended"]
    assert sorted(ended) == ["c1", "c2"]


def test_a_restarted_desk_claims_nothing_until_the_softphones_snapshot() -> None:
    desk = Desk(awaiting_snapshot=True)
    desk.restore({}, agent=L.AGENT_ON_CALL, now=0)
    assert desk.full_state(0) is None  # the unit keeps its "no host" scene
    assert states(desk.tick(1)) == []
    assert states(desk.act("toggle_break", 1.5)) == []
    call = Call("c1", "sip:c1@x", "inbound", CallState.ESTABLISHED)
    effects = desk.softphone_event(SoftphoneEvent(EventKind.CONNECTED, calls=[call]), 2)
    assert [(s.call, s.agent) for s in states(effects)] == [(L.CALL_ACTIVE, L.AGENT_ON_CALL)]
    assert desk.full_state(2) is not None


def test_mute_confirmed_for_this_call_survives_a_restart_and_no_other() -> None:
    calls = [Call("c1", "sip:c1@x", "inbound", CallState.ESTABLISHED)]
    for mutes, flags in (
        ({"c1": False}, 0),  # established while the daemon watched, never toggled: un-muted
        ({"c1": True}, L.STATE_MUTED),  # the daemon confirmed the toggle
        ({"c0": True}, L.STATE_MUTE_UNCONFIRMED),  # only another call's state is known
        ({}, L.STATE_MUTE_UNCONFIRMED),
    ):
        desk = Desk(awaiting_snapshot=True)
        desk.restore(mutes, agent=L.AGENT_ON_CALL, now=0)
        effects = desk.softphone_event(SoftphoneEvent(EventKind.CONNECTED, calls=calls), 1)
        assert states(effects)[-1].flags == flags, mutes


def test_a_resumed_call_shows_its_own_mute_not_the_newer_calls() -> None:
    desk = Desk()
    desk.softphone_event(ev(EventKind.INCOMING, "c1"), 0)
    desk.softphone_event(ev(EventKind.ESTABLISHED, "c1"), 1)
    desk.act("mute", 2)
    desk.command_done(Command("mute", "c1", True), True, 2.1)
    desk.softphone_event(ev(EventKind.INCOMING, "c2"), 5)
    desk.softphone_event(ev(EventKind.ESTABLISHED, "c2"), 6)  # c1 on hold, still muted in the softphone
    assert not desk.unit_state().flags & L.STATE_MUTED  # c2 is un-muted
    effects = desk.softphone_event(ev(EventKind.CLOSED, "c2"), 10)
    effects += desk.command_done(Command("resume", "c1"), False, 11)
    assert desk.unit_state().flags & L.STATE_MUTED  # back on c1: its own, confirmed mute
    assert desk.mutes() == {"c1": True}
