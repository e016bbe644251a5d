"""Report figures against hand-computed fixtures (every number below was worked out by hand)."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from offhook.metrics.report import Report, ReportQuery, build, open_sources, today
from offhook.metrics.store import CallRecorder, MetricsError, store_id
from tests.metrics.calls import play

BERLIN = ZoneInfo("Europe/Berlin")


def report(rec: CallRecorder, **query: object) -> Report:
    sources = open_sources([rec.path])
    try:
        return build(sources, ReportQuery(**query))  # type: ignore[arg-type]
    finally:
        for conn in sources:
            conn.close()


def ann_day(rec: CallRecorder) -> None:
    """Ann's 10 March 2026 (Berlin, UTC+1): six calls, one of each kind."""
    day = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)
    # A: plain call. ring 10, talk 120, wrap 30.
    play(rec, "A", day, [("answered", 10), ("hung_up", 130), ("wrap_up_ended", 160)])
    # B: three holds (60, 150, 10 = 220; one longer than 2 min). ring 5, talk 495 - 220 = 275, wrap 20.
    play(
        rec,
        "B",
        day.replace(hour=10),
        [
            ("answered", 5),
            ("hold_started", 100),
            ("hold_ended", 160),
            ("hold_started", 200),
            ("hold_ended", 350),
            ("hold_started", 400),
            ("hold_ended", 410),
            ("hung_up", 500),
            ("wrap_up_ended", 520),
        ],
    )
    # C: missed after 30 s of ringing. D: abandoned by the caller after 8 s.
    play(rec, "C", day.replace(hour=11), [("missed", 30)])
    play(rec, "D", day.replace(hour=12), [("abandoned", 8)])
    # E: transferred. ring 20, talk 180, wrap 10.
    play(
        rec,
        "E",
        day.replace(hour=13),
        [("answered", 20), ("transferred", 150), ("hung_up", 200), ("wrap_up_ended", 210)],
    )
    # F: escalated; the customer waits on hold 150 s while the supervisor is consulted;
    # the agent's leg ends on hold. ring 4, hold 150, talk 296 - 150 = 146, wrap 60.
    play(
        rec,
        "F",
        day.replace(hour=14),
        [
            ("answered", 4),
            ("hold_started", 100),
            ("escalated", 200),
            ("hold_ended", 250),
            ("hung_up", 300),
            ("wrap_up_ended", 360),
        ],
    )


def test_hand_computed_day(recorder: CallRecorder) -> None:
    ann_day(recorder)
    total = report(recorder).total
    assert (total.calls, total.handled, total.missed, total.abandoned) == (6, 4, 1, 1)
    assert (total.answered, total.transferred, total.escalated) == (2, 1, 1)
    assert total.missed_rate == pytest.approx(2 / 6)
    # ring of handled calls 10, 5, 20, 4 -> sorted 4 5 10 20; p90 at rank 2.7: 10 + 0.7 * 10
    assert (total.ring.mean, total.ring.median, total.ring.p90) == pytest.approx((9.75, 7.5, 17.0))
    # talk 120, 275, 180, 146 -> sorted 120 146 180 275; p90: 180 + 0.7 * 95
    assert (total.talk.mean, total.talk.median, total.talk.p90) == pytest.approx((180.25, 163.0, 246.5))
    # hold 0, 220, 0, 150 -> sorted 0 0 150 220; p90: 150 + 0.7 * 70
    assert (total.hold.mean, total.hold.median, total.hold.p90) == pytest.approx((92.5, 75.0, 199.0))
    # wrap 30, 20, 10, 60 -> sorted 10 20 30 60; p90: 30 + 0.7 * 30
    assert (total.wrap.mean, total.wrap.median, total.wrap.p90) == pytest.approx((30.0, 25.0, 51.0))
    # AHT = (721 talk + 370 hold + 120 wrap) / 4 handled
    assert total.aht_s == pytest.approx(1211 / 4)
    assert (total.holds, total.long_holds) == (4, 2)


def test_by_day_agent_and_filters(recorder: CallRecorder) -> None:
    ann_day(recorder)
    play(
        recorder,
        "bob-1",
        datetime(2026, 3, 11, 9, 0, tzinfo=BERLIN),
        [("answered", 3), ("hung_up", 63), ("wrap_up_ended", 70)],
        agent="bob",
    )
    by_day = report(recorder, by="day")
    assert [(row.group, row.calls, row.handled) for row in by_day.rows] == [("2026-03-10", 6, 4), ("2026-03-11", 1, 1)]
    by_agent = report(recorder, by="agent")
    assert [(row.group, row.calls) for row in by_agent.rows] == [("ann", 6), ("bob", 1)]
    bob = by_agent.rows[1]
    assert (bob.ring.mean, bob.talk.mean, bob.wrap.mean, bob.aht_s) == pytest.approx((3.0, 60.0, 7.0, 67.0))
    assert report(recorder, agent="bob").total.calls == 1
    assert report(recorder, since=date(2026, 3, 11)).total.calls == 1
    assert report(recorder, until=date(2026, 3, 10)).total.calls == 6
    assert report(recorder, since=date(2026, 3, 12)).total.calls == 0
    assert report(recorder, since=date(2026, 3, 12)).total.aht_s is None


def test_call_spanning_midnight_counts_on_its_ring_day(recorder: CallRecorder) -> None:
    # Rings 23:58 local on 10 March, talk goes past midnight, wrap-up ends on the 11th.
    play(
        recorder,
        "late",
        datetime(2026, 3, 10, 23, 58, tzinfo=BERLIN),
        [("answered", 20), ("hung_up", 620), ("wrap_up_ended", 650)],
    )
    rows = report(recorder, by="day").rows
    assert [(row.group, row.calls) for row in rows] == [("2026-03-10", 1)]
    assert (rows[0].ring.mean, rows[0].talk.mean, rows[0].wrap.mean) == pytest.approx((20.0, 600.0, 30.0))
    assert report(recorder, since=date(2026, 3, 11)).total.calls == 0


def test_wall_clock_change_during_call_changes_no_duration(recorder: CallRecorder) -> None:
    # During the talk the PC's clock is set back one hour (and later forward two): durations
    # come from the monotonic clock, so the figures are those of the scripted call.
    play(
        recorder,
        "clock",
        datetime(2026, 3, 10, 0, 30, tzinfo=BERLIN),
        [("answered", 15), ("hold_started", 100), ("hold_ended", 130), ("hung_up", 400), ("wrap_up_ended", 445)],
        steps=((50.0, -3600.0), (300.0, 7200.0)),
    )
    total = report(recorder).total
    assert (total.ring.mean, total.talk.mean, total.hold.mean, total.wrap.mean) == pytest.approx((15, 355, 30, 45))
    # The day is the wall-clock date at ring start (before the change): still 10 March.
    assert [row.group for row in report(recorder, by="day").rows] == ["2026-03-10"]


def test_local_day_and_dst_hours_in_the_agents_zone(recorder: CallRecorder) -> None:
    # New York leaves DST on 1 Nov 2026 at 02:00 EDT -> 01:00 EST: 01:30 happens twice.
    utc = ZoneInfo("UTC")
    first = datetime(2026, 11, 1, 5, 30, tzinfo=utc)  # 01:30 EDT (UTC-4)
    second = datetime(2026, 11, 1, 6, 30, tzinfo=utc)  # 01:30 EST (UTC-5)
    evening = datetime(2026, 11, 1, 3, 30, tzinfo=utc)  # 23:30 EDT on 31 October, though 1 Nov in UTC
    for name, start in (("first", first), ("second", second), ("evening", evening)):
        play(recorder, name, start, [("answered", 2), ("hung_up", 32), ("wrap_up_ended", 33)], tz="America/New_York")
    by_day = report(recorder, by="day").rows
    assert [(row.group, row.calls) for row in by_day] == [("2026-10-31", 1), ("2026-11-01", 2)]
    by_hour = report(recorder, by="hour").rows
    assert [(row.group, row.calls) for row in by_hour] == [
        ("2026-10-31T23:00-04:00", 1),
        ("2026-11-01T01:00-04:00", 1),
        ("2026-11-01T01:00-05:00", 1),
    ]


def test_unanswered_calls_are_not_handled(recorder: CallRecorder) -> None:
    start = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)
    play(recorder, "m", start, [("missed", 25)])
    play(recorder, "a", start.replace(hour=10), [("hung_up", 12)])  # caller hung up while ringing
    total = report(recorder).total
    assert (total.calls, total.handled, total.missed, total.abandoned, total.missed_rate) == (2, 0, 1, 1, 1.0)
    assert total.aht_s is None and total.ring.mean is None


def test_calls_in_progress_are_not_reported(recorder: CallRecorder) -> None:
    start = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)
    play(recorder, "talking", start, [("answered", 5)])
    play(recorder, "wrapping", start, [("answered", 5), ("hung_up", 50)])
    assert report(recorder).total.calls == 0


def test_several_sources_add_up(tmp_path: Path) -> None:
    with CallRecorder(tmp_path / "ann.sqlite3") as ann, CallRecorder(tmp_path / "bob.sqlite3") as bob:
        ann_day(ann)
        play(bob, "bob-1", datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN), [("missed", 10)], agent="bob")
    sources = open_sources([tmp_path / "ann.sqlite3", tmp_path / "bob.sqlite3"])
    result = build(sources, ReportQuery(by="agent"))
    assert [(row.group, row.calls, row.missed) for row in result.rows] == [("ann", 6, 1), ("bob", 1, 1)]
    assert (result.total.calls, result.total.handled) == (7, 4)


def test_today_figures_for_the_panel(recorder: CallRecorder) -> None:
    ann_day(recorder)
    figures = today(recorder.conn, agent="ann", tz="Europe/Berlin", now=datetime(2026, 3, 10, 18, 0, tzinfo=BERLIN))
    assert figures["group"] == "2026-03-10"
    assert (figures["calls"], figures["handled"], figures["aht_s"]) == (6, 4, 302.75)
    nothing = today(recorder.conn, agent="ann", tz="Europe/Berlin", now=datetime(2026, 3, 11, 8, 0, tzinfo=BERLIN))
    assert nothing["calls"] == 0 and nothing["aht_s"] is None


def test_repeated_dst_hour_east_of_utc_stays_in_time_order(recorder: CallRecorder) -> None:
    # Berlin leaves DST on 25 Oct 2026 at 03:00 CEST -> 02:00 CET: 02:30 happens twice.
    utc = ZoneInfo("UTC")
    for name, hour in (("second", 1), ("first", 0)):  # recorded out of order on purpose
        start = datetime(2026, 10, 25, hour, 30, tzinfo=utc)
        play(recorder, name, start, [("answered", 2), ("hung_up", 32), ("wrap_up_ended", 33)])
    rows = report(recorder, by="hour").rows
    assert [row.group for row in rows] == ["2026-10-25T02:00+02:00", "2026-10-25T02:00+01:00"]


def test_missed_call_answered_after_all_is_handled(recorder: CallRecorder) -> None:
    # Ring-no-answer marks it missed at 30 s, but it keeps ringing and the agent answers at 45 s.
    play(
        recorder,
        "late-answer",
        datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN),
        [("missed", 30), ("answered", 45), ("hung_up", 105), ("wrap_up_ended", 115)],
    )
    total = report(recorder).total
    assert (total.calls, total.handled, total.missed) == (1, 1, 0)
    assert (total.ring.mean, total.talk.mean, total.wrap.mean) == (45.0, 60.0, 10.0)


def _halves(tmp_path: Path, rec: CallRecorder) -> tuple[Path, Path]:
    """Exports of one store for 1-15 and 16-31 March 2026."""
    from offhook.metrics.export import export

    first, second = tmp_path / "ann-1.offhook", tmp_path / "ann-2.offhook"
    export(rec.path, first, ReportQuery(since=date(2026, 3, 1), until=date(2026, 3, 15)))
    export(rec.path, second, ReportQuery(since=date(2026, 3, 16), until=date(2026, 3, 31)))
    return first, second


def test_exports_of_one_store_for_two_halves_of_a_month_combine(recorder: CallRecorder, tmp_path: Path) -> None:
    ann_day(recorder)  # 10 March
    play(
        recorder,
        "G",
        datetime(2026, 3, 20, 9, 0, tzinfo=BERLIN),
        [("answered", 5), ("hung_up", 65), ("wrap_up_ended", 75)],
    )
    sources = open_sources([*_halves(tmp_path, recorder)])
    try:
        combined = build(sources, ReportQuery(by="day"))
    finally:
        for conn in sources:
            conn.close()
    assert [(row.group, row.calls) for row in combined.rows] == [("2026-03-10", 6), ("2026-03-20", 1)]
    assert combined.total == report(recorder).total
    assert combined.warnings == []  # one store, one agent: nothing to tell apart


def test_the_same_call_twice_is_refused_by_its_store_and_call_id(recorder: CallRecorder, tmp_path: Path) -> None:
    from offhook.metrics.export import export

    ann_day(recorder)
    whole, overlapping = tmp_path / "march.offhook", tmp_path / "10-31.offhook"
    export(recorder.path, whole, ReportQuery(since=date(2026, 3, 1), until=date(2026, 3, 31)))
    export(recorder.path, overlapping, ReportQuery(since=date(2026, 3, 10)))
    for paths in ([whole, overlapping], [recorder.path, whole], [whole, whole]):
        with pytest.raises(MetricsError, match=r"hold the same call '[A-F]' of the same store"):
            open_sources(paths)


def test_two_desks_on_one_direct_call_both_count(tmp_path: Path) -> None:
    # Ann calls Bob directly: both desks record the call under the one SIP Call-ID it has.
    start = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)
    with CallRecorder(tmp_path / "ann.sqlite3") as ann, CallRecorder(tmp_path / "bob.sqlite3") as bob:
        play(ann, "direct-1", start, [("answered", 2), ("hung_up", 62), ("wrap_up_ended", 70)], direction="outbound")
        play(bob, "direct-1", start, [("answered", 2), ("hung_up", 62), ("wrap_up_ended", 65)], agent="bob")
    sources = open_sources([tmp_path / "ann.sqlite3", tmp_path / "bob.sqlite3"])
    result = build(sources, ReportQuery(by="agent"))
    assert [(row.group, row.calls) for row in result.rows] == [("ann", 1), ("bob", 1)]
    assert result.warnings == []


def test_two_agents_of_one_name_in_two_stores_are_kept_apart_with_a_warning(tmp_path: Path) -> None:
    start = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)
    with CallRecorder(tmp_path / "a.sqlite3") as first, CallRecorder(tmp_path / "b.sqlite3") as second:
        play(first, "x1", start, [("answered", 10), ("hung_up", 70), ("wrap_up_ended", 80)])
        play(second, "y1", start, [("missed", 20)])
        play(second, "y2", start, [("missed", 20)])
        ids = [store_id(first.conn)[:8], store_id(second.conn)[:8]]  # type: ignore[index]
    sources = open_sources([tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"])
    result = build(sources, ReportQuery(by="agent"))
    rows = sorted((row.group, row.calls, row.handled) for row in result.rows)
    assert rows == sorted([(f"ann (store {ids[0]})", 1, 1), (f"ann (store {ids[1]})", 2, 0)])
    assert len(result.warnings) == 1
    assert "ann" in result.warnings[0] and all(i in result.warnings[0] for i in ids)
    assert (result.total.calls, result.total.handled) == (3, 1)


def test_fast_rounding_equals_round() -> None:
    from offhook.metrics.report import _rounded

    rng = np.random.default_rng(18)
    values = np.concatenate(
        [
            rng.integers(0, 2**31, 20_000) / 1000.0 / rng.integers(1, 500, 20_000),  # means of whole ms
            rng.random(20_000),  # rates
            np.array([0.0025, 0.0015, 2.675, 1.0005, 1.2345, 0.1235, 0.5, 0.0, 12345.6785, 2.0**40 + 0.0005]),
            np.arange(0, 5000) / 2000.0,  # every tie at the fourth decimal, and at the third
        ]
    )
    for digits in (3, 4):
        assert _rounded(values, digits) == [round(value, digits) for value in values.tolist()]
