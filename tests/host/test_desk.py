"""The desk state machine: contact-centre rules with controlled time."""

from __future__ import annotations

import random

from offhook import linkproto as L
from offhook.daemon.desk import Command, Desk, Effect, Notice, Record, Timers, UnitState
from offhook.softphone.base import Call, CallState, EventKind, SoftphoneEvent

SUPERVISOR = "sip:supervisor@127.0.0.1:5090"


def ev(kind: EventKind, call_id: str = "c1", peer: str = "sip:customer@x", reason: str = "") -> SoftphoneEvent:
    return SoftphoneEvent(kind, call_id, peer, "inbound", reason)


def commands(effects: list[Effect]) -> list[tuple[str, str]]:
    return [(e.op, e.call_id) for e in effects if isinstance(e, Command)]


def records(effects: list[Effect]) -> list[str]:
    return [e.moment for e in effects if isinstance(e, Record)]


def notices(effects: list[Effect]) -> list[str]:
    return [e.name for e in effects if isinstance(e, Notice)]


def last_state(effects: list[Effect]) -> UnitState:
    states = [e for e in effects if isinstance(e, UnitState)]
    assert states, f"no STATE in {effects}"
    return states[-1]


def answered_desk(now: float = 0.0) -> Desk:
    desk = Desk(Timers(), supervisor=SUPERVISOR)
    desk.softphone_event(ev(EventKind.INCOMING), now)
    desk.softphone_event(ev(EventKind.ESTABLISHED), now + 2)
    return desk


def test_call_lifecycle_to_wrap_up_and_back() -> None:
    desk = Desk(Timers(wrap_up_s=30))
    effects = desk.softphone_event(ev(EventKind.INCOMING), 0)
    assert last_state(effects) == UnitState(L.CALL_RINGING, L.AGENT_AVAILABLE, 0, 0)
    assert records(effects) == ["ringing"]
    assert commands(desk.act("hook", 1)) == [("answer", "c1")]
    effects = desk.softphone_event(ev(EventKind.ESTABLISHED), 1.5)
    assert last_state(effects) == UnitState(L.CALL_ACTIVE, L.AGENT_ON_CALL, 0, 0)
    assert commands(desk.act("hook", 60)) == [("hangup", "c1")]
    effects = desk.softphone_event(ev(EventKind.CLOSED, reason="Connection reset by user"), 60.1)
    assert records(effects) == ["hung_up"]
    assert last_state(effects) == UnitState(L.CALL_IDLE, L.AGENT_WRAP_UP, 0, 30)
    desk.tick(75)
    assert desk.unit_state().timer_s == 15  # counts down
    effects = desk.tick(90.2)
    assert records(effects) == ["wrap_up_ended"]
    assert last_state(effects).agent == L.AGENT_AVAILABLE


def test_wrap_up_ended_early_or_extended_by_state_button() -> None:
    desk = answered_desk()
    desk.softphone_event(ev(EventKind.CLOSED), 10)
    desk.act("extend_wrap_up", 11)
    assert desk.unit_state().timer_s == 59  # 30 - 1 + 30
    desk.tick(45)
    assert desk.agent == L.AGENT_WRAP_UP
    effects = desk.act("toggle_break", 46)  # short press during wrap-up ends it
    assert records(effects) == ["wrap_up_ended"]
    assert desk.agent == L.AGENT_AVAILABLE


def test_ring_no_answer_is_missed_puts_agent_on_break_and_never_rejects() -> None:
    desk = Desk(Timers(ring_timeout_s=20))
    desk.softphone_event(ev(EventKind.INCOMING), 0)
    assert desk.tick(19.9) == []
    effects = desk.tick(20)
    assert records(effects) == ["missed"]
    assert "missed_call" in notices(effects)
    assert commands(effects) == []  # left to the softphone
    assert last_state(effects).agent == L.AGENT_BREAK
    assert records(desk.tick(200)) == []  # recorded once
    effects = desk.softphone_event(ev(EventKind.CLOSED, reason="caller gave up"), 301)
    assert records(effects) == []  # already counted as missed, not also abandoned
    assert desk.agent == L.AGENT_BREAK
    desk.act("toggle_break", 302)
    assert desk.agent == L.AGENT_AVAILABLE


def test_caller_hangs_up_while_ringing_is_abandoned() -> None:
    desk = Desk()
    desk.softphone_event(ev(EventKind.INCOMING), 0)
    effects = desk.softphone_event(ev(EventKind.CLOSED, reason="Connection reset by peer"), 5)
    assert records(effects) == ["abandoned"]
    assert desk.agent == L.AGENT_AVAILABLE  # no wrap-up for a call never answered


def test_second_call_waiting_then_answer_holds_first() -> None:
    desk = answered_desk()
    effects = desk.softphone_event(ev(EventKind.INCOMING, "c2", "sip:other@x"), 10)
    state = last_state(effects)
    assert state.call == L.CALL_ACTIVE and state.flags & L.STATE_CALL_WAITING
    assert commands(desk.act("hook", 11)) == [("answer", "c2")]  # hook answers, never hangs up c1
    effects = desk.softphone_event(ev(EventKind.ESTABLISHED, "c2", "sip:other@x"), 11.2)
    assert desk.calls["c1"].state == "held" and desk.calls["c2"].state == "active"
    assert records(effects) == ["hold_started", "answered"]
    assert not last_state(effects).flags & L.STATE_CALL_WAITING


def test_hold_reminder_every_two_minutes_of_continuous_hold() -> None:
    desk = answered_desk()
    assert commands(desk.act("hold", 10)) == [("hold", "c1")]
    desk.command_done(Command("hold", "c1"), True, 10.1)
    assert desk.unit_state().call == L.CALL_HELD
    assert desk.tick(129) == []
    effects = desk.tick(130.1)
    assert notices(effects) == ["hold_reminder"]
    assert last_state(effects).flags & L.STATE_HOLD_REMINDER
    assert not last_state(desk.tick(136)).flags & L.STATE_HOLD_REMINDER  # a flash, then off
    assert notices(desk.tick(250.2)) == ["hold_reminder"]  # again at 4 minutes
    # A check-in (resume) restarts the clock.
    desk.command_done(Command("resume", "c1"), False, 260)
    desk.command_done(Command("hold", "c1"), True, 261)
    assert desk.tick(380) == []
    assert notices(desk.tick(381.1)) == ["hold_reminder"]


def test_mute_led_follows_confirmation_only() -> None:
    desk = answered_desk()
    effects = desk.act("mute", 10)
    assert commands(effects) == [("mute", "c1")]
    assert not [e for e in effects if isinstance(e, UnitState)]  # nothing shown yet
    assert "refused" in notices(desk.act("mute", 10.2))  # one request at a time
    effects = desk.command_done(Command("mute", "c1", True), True, 10.05)
    assert last_state(effects).flags & L.STATE_MUTED


def test_unconfirmed_mute_times_out_and_shows_truth() -> None:
    desk = answered_desk()
    desk.act("mute", 10)
    assert notices(desk.tick(11.0)) == ["mute_unconfirmed"]
    assert not desk.unit_state().flags & L.STATE_MUTED
    failed = desk.command_failed(Command("mute", "c1", True), "baresip did not answer", 11.5)
    assert "command_failed" in notices(failed)
    assert commands(desk.act("mute", 12)) == [("mute", "c1")]  # can try again


def test_restart_shows_mute_of_another_call_as_unconfirmed_until_softphone_says() -> None:
    desk = Desk(awaiting_snapshot=True)
    desk.restore({"c0": True}, agent=L.AGENT_ON_CALL, now=0)  # confirmed for an earlier call only
    call = Call("c1", "sip:customer@x", "inbound", CallState.ESTABLISHED)
    effects = desk.softphone_event(SoftphoneEvent(EventKind.CONNECTED, calls=[call]), 0.1)
    assert last_state(effects).flags == L.STATE_MUTE_UNCONFIRMED  # claims neither muted nor un-muted
    assert commands(effects) == []  # never toggles to probe
    effects = desk.command_done(Command("mute", "c1", True), True, 5)
    assert last_state(effects).flags == L.STATE_MUTED


def test_escalate_consults_then_transfers_when_supervisor_answers() -> None:
    desk = answered_desk()
    effects = desk.act("escalate", 10)
    assert [(c.op, c.call_id, c.arg) for c in effects if isinstance(c, Command)] == [
        ("hold", "c1", None),
        ("dial", "", SUPERVISOR),
    ]
    assert records(effects) == ["escalated"]
    desk.command_done(Command("hold", "c1", purpose="consult"), True, 10.1)
    desk.softphone_event(SoftphoneEvent(EventKind.RINGING, "s1", SUPERVISOR, "outbound"), 10.2)
    desk.command_done(Command("dial", arg=SUPERVISOR, purpose="consult"), "s1", 10.3)
    assert desk.unit_state().flags & L.STATE_CONSULT
    effects = desk.softphone_event(SoftphoneEvent(EventKind.ESTABLISHED, "s1", SUPERVISOR, "outbound"), 15)
    assert commands(effects) == [("hangup", "s1"), ("transfer", "c1")]
    assert records(effects) == ["transferred"]
    assert "answered" not in records(effects)  # the consult leg is not a customer call


def test_escalate_without_answer_returns_to_customer_and_never_hangs_up_on_them() -> None:
    desk = answered_desk()
    desk.act("escalate", 10)
    desk.command_done(Command("hold", "c1", purpose="consult"), True, 10.1)
    desk.softphone_event(SoftphoneEvent(EventKind.RINGING, "s1", SUPERVISOR, "outbound"), 10.2)
    effects = desk.tick(40.5)
    assert commands(effects) == [("hangup", "s1"), ("resume", "c1")]
    assert "consult_ended" in notices(effects)


def test_escalate_refused_without_supervisor_or_call() -> None:
    assert "refused" in notices(Desk(supervisor=SUPERVISOR).act("escalate", 0))
    desk = answered_desk()
    desk.supervisor = ""
    effects = desk.act("escalate", 5)
    assert commands(effects) == [] and "refused" in notices(effects)


def test_agent_state_button_and_api() -> None:
    desk = Desk()
    desk.act("toggle_break", 0)
    assert desk.agent == L.AGENT_BREAK
    desk.act("go_offline", 1)
    assert desk.agent == L.AGENT_OFFLINE
    desk.set_agent_state("available", 2)
    assert desk.agent == L.AGENT_AVAILABLE
    assert "refused" in notices(desk.set_agent_state("on_call", 3))
    busy = answered_desk()
    assert "refused" in notices(busy.set_agent_state("break", 3))


def test_softphone_reconnect_closes_calls_it_no_longer_has() -> None:
    desk = answered_desk()
    effects = desk.softphone_event(SoftphoneEvent(EventKind.CONNECTED, calls=[]), 30)
    assert records(effects) == ["hung_up"]
    assert desk.agent == L.AGENT_WRAP_UP


def test_no_call_is_ever_ended_without_an_agent_action() -> None:
    """Random softphone events and clock ticks, no agent actions: never a hangup/reject/transfer."""
    rng = random.Random(7)
    kinds = [
        EventKind.INCOMING,
        EventKind.ESTABLISHED,
        EventKind.CLOSED,
        EventKind.HELD,
        EventKind.RESUMED,
        EventKind.MUTED,
        EventKind.DISCONNECTED,
    ]
    for _ in range(200):
        desk = Desk(Timers(ring_timeout_s=5, hold_reminder_s=10, wrap_up_s=3), supervisor=SUPERVISOR)
        now = 0.0
        for _ in range(60):
            now += rng.uniform(0, 8)
            if rng.random() < 0.5:
                effects = desk.tick(now)
            else:
                effects = desk.softphone_event(ev(rng.choice(kinds), rng.choice(["a", "b"])), now)
            ended = [c for c in effects if isinstance(c, Command) and c.op in ("hangup", "reject", "transfer")]
            assert ended == [], ended


def test_clock_jump_on_hold_gives_one_reminder_not_a_burst() -> None:
    """The PC slept for an hour with a call on hold: one reminder on waking, then every 2 minutes."""
    desk = answered_desk()
    desk.command_done(Command("hold", "c1"), True, 10)
    reminders = [n for t in (10.5, 3610, 3610.25, 3610.5, 3611) for n in notices(desk.tick(t)) if n == "hold_reminder"]
    assert reminders == ["hold_reminder"]
    assert "hold_reminder" not in notices(desk.tick(3620))
    assert "hold_reminder" in notices(desk.tick(3730.1))  # the next whole period of hold


def test_clock_jump_while_ringing_and_in_wrap_up_acts_once() -> None:
    desk = Desk(Timers(ring_timeout_s=20, wrap_up_s=30))
    desk.softphone_event(ev(EventKind.INCOMING), 0)
    effects = desk.tick(5000)  # slept through the ringing
    assert records(effects) == ["missed"] and commands(effects) == []
    assert records(desk.tick(5000.25)) == []


def test_hid_softphone_flag_follows_config() -> None:
    assert not Desk().unit_state().flags & L.STATE_HID_SOFTPHONE
    assert Desk(hid_softphone=True).unit_state().flags & L.STATE_HID_SOFTPHONE
