"""The daemon's Record effects, as the desk state machine emits them, land in the store."""

from __future__ import annotations

from offhook.daemon.desk import Record
from offhook.metrics.report import ReportQuery, build
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder

WALL0 = 1773129600.0  # 2026-03-10 08:00 UTC = 09:00 in Berlin


def test_desk_records_become_a_completed_call(recorder: CallRecorder) -> None:
    clock = iter(WALL0 + t for t in range(100))
    sink = MetricsSink(recorder, agent="ann", tz="Europe/Berlin", wall_clock=lambda: next(clock))
    records = [
        Record("ringing", "c1", 100.0, {"peer": "sip:+4930111@pbx", "direction": "inbound"}),
        Record("answered", "c1", 106.0),
        Record("hold_started", "c1", 130.0),
        Record("escalated", "c1", 131.0, {"supervisor": "sip:sup@pbx"}),
        Record("hold_ended", "c1", 170.0),
        Record("transferred", "c1", 171.0, {"to": "sip:sup@pbx", "escalation": True}),
        Record("hung_up", "c1", 172.0, {"reason": "transferred"}),
        Record("wrap_up_ended", "c1", 202.0),
        Record("ringing", "c2", 300.0, {"peer": "sip:+4930222@pbx", "direction": "outbound"}),
        Record("unanswered", "c2", 330.0, {"reason": "no answer"}),
        Record("coffee_break", "c3", 400.0),
    ]
    results = [sink(record) for record in records]
    assert results == [True, True, True, True, True, False, True, True, True, True, False]
    total = build([recorder.conn], ReportQuery()).total
    assert (total.calls, total.handled, total.escalated, total.abandoned) == (2, 1, 1, 1)
    assert (total.ring.mean, total.talk.mean, total.hold.mean, total.wrap.mean) == (6.0, 26.0, 40.0, 30.0)
    day = recorder.conn.execute("SELECT local_day, tz, agent FROM calls WHERE call_id = 'c1'").fetchone()
    assert tuple(day) == ("2026-03-10", "Europe/Berlin", "ann")


def test_bad_event_is_logged_not_raised(recorder: CallRecorder) -> None:
    sink = MetricsSink(recorder, agent="ann", tz="Nowhere/Town", wall_clock=lambda: WALL0)
    assert sink(Record("ringing", "c1", 1.0, {"direction": "inbound"})) is False
    assert recorder.open_calls() == []


def test_retention_is_applied_after_a_call_completes_at_most_daily(recorder: CallRecorder) -> None:
    day = 86400.0
    now = [WALL0]
    sink = MetricsSink(recorder, agent="ann", tz="UTC", wall_clock=lambda: now[0], retention_days=30)

    def old_call(call_id: str) -> None:  # a call from 40 days ago, already in the store
        recorder.ringing(
            call_id, agent="ann", direction="inbound", number="+4930111", tz="UTC", wall=WALL0 - 40 * day, mono=1
        )
        recorder.missed(call_id, wall=WALL0 - 40 * day + 20, mono=21)

    def new_call(call_id: str, wall: float, mono: float) -> None:
        now[0] = wall
        sink(Record("ringing", call_id, mono, {"direction": "inbound", "peer": "+4930222"}))
        sink(Record("missed", call_id, mono + 20))

    def stored() -> set[str]:
        return {row[0] for row in recorder.conn.execute("SELECT call_id FROM calls")}

    old_call("old")
    new_call("new", WALL0, 100.0)
    assert stored() == {"new"}  # the first completed call applied the retention period
    old_call("old-2")
    new_call("an-hour-later", WALL0 + 3600, 3700.0)
    assert stored() == {"new", "old-2", "an-hour-later"}  # at most once a day
    new_call("next-day", WALL0 + day, 100.0 + day)
    assert stored() == {"new", "an-hour-later", "next-day"}


def test_an_unknown_zone_in_tz_falls_back_instead_of_losing_every_call(monkeypatch) -> None:
    from offhook.metrics.sink import local_zone_name
    from offhook.metrics.store import zone

    monkeypatch.setenv("TZ", "Mars/Olympus")
    name = local_zone_name()
    assert name != "Mars/Olympus"
    zone(name)  # a zone every call can be recorded under
