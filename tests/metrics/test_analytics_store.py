"""Conversation analytics in the store (migration 4): per call, null when not metered, never zero."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from offhook.metrics import store
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder, MetricsError
from tests.metrics.calls import play

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)
CALL = [("answered", 5), ("hung_up", 100), ("wrap_up_ended", 110)]
FIGURES = {
    "connected_s": 95.0, "hold_s": 0.0, "agent_talk_s": 40.0, "customer_talk_s": 45.0, "agent_share": 0.47,
    "customer_share": 0.53, "talking_while_muted_s": 0.0, "overtalk_count": 2, "overtalk_s": 1.4,
    "overtalk_started_by_agent": 1, "overtalk_started_by_customer": 1, "dead_air_count": 1, "dead_air_s": 4.0,
    "dead_air_longest_s": 4.0, "response_count": 9, "response_median_s": 0.61, "agent_longest_monologue_s": 12.0,
    "customer_longest_monologue_s": 15.0, "holds": 0, "missed_checkins": 0, "longest_hold_s": 0.0,
    "quality": {"noise_floor_dbfs": -62.0, "clipping_pct": 0.0, "echo_reduction_db": None,
                "agent_level_dbfs": -24.0, "customer_level_dbfs": -26.0},
    "overtalks": [{"start_s": 1.0}], "dead_airs": [],
}  # fmt: skip


def analytics_of(rec: CallRecorder, call_id: str) -> dict | None:
    text = rec.conn.execute("SELECT analytics FROM calls WHERE call_id = ?", (call_id,)).fetchone()[0]
    return None if text is None else json.loads(text)


def test_migration_keeps_existing_calls_null(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    store._migrate(conn, 0)
    conn.close()
    # Make it a version-3 store holding a call: drop the column's version record and the column.
    with CallRecorder(path) as rec:
        play(rec, "before", START, CALL)
    with sqlite3.connect(path, isolation_level=None) as raw:
        raw.execute("ALTER TABLE calls DROP COLUMN analytics")
        raw.execute("DELETE FROM schema_version WHERE version = 4")
    with CallRecorder(path) as rec:
        assert analytics_of(rec, "before") is None
        assert rec.analytics("before", FIGURES)  # a late copy for a completed call is still taken


def test_figures_stored_once_known_fields_only(recorder: CallRecorder) -> None:
    play(recorder, "c1", START, CALL[:2])
    assert recorder.analytics("c1", FIGURES)
    assert not recorder.analytics("c1", {**FIGURES, "connected_s": 1.0})  # once only
    kept = analytics_of(recorder, "c1")
    assert kept is not None and kept["agent_share"] == 0.47 and kept["quality"]["echo_reduction_db"] is None
    assert "overtalks" not in kept and "dead_airs" not in kept
    assert set(kept) == {*store.ANALYTICS_FIELDS, "quality"}


def test_unanswered_or_unknown_calls_take_no_figures(recorder: CallRecorder) -> None:
    play(recorder, "missed", START, [("missed", 20)])
    assert not recorder.analytics("missed", FIGURES)
    assert not recorder.analytics("nobody", FIGURES)
    assert analytics_of(recorder, "missed") is None


def test_bad_figures_are_refused_in_one_line(recorder: CallRecorder) -> None:
    play(recorder, "c1", START, CALL[:2])
    for bad in ([], "x", {}, {"connected_s": "long"}):
        with pytest.raises(MetricsError) as caught:
            recorder.analytics("c1", bad)  # type: ignore[arg-type]
        assert "\n" not in str(caught.value)
    odd = recorder.analytics("c1", {"connected_s": 10.0, "agent_share": float("nan"), "holds": True})
    assert odd
    kept = analytics_of(recorder, "c1")
    assert kept is not None and kept["agent_share"] is None and kept["holds"] is None  # never a made-up zero


def test_a_completed_call_goes_to_the_floor_again_with_its_figures(recorder: CallRecorder) -> None:
    recorder.floor_enable()
    play(recorder, "c1", START, CALL)
    (first,) = recorder.floor_pending(0, 10)
    assert first["analytics"] is None
    recorder.analytics("c1", FIGURES)
    (again,) = recorder.floor_pending(first["floor_seq"], 10)
    assert again["call_id"] == "c1" and again["analytics"]["dead_air_s"] == 4.0


def test_sink_never_raises(recorder: CallRecorder) -> None:
    sink = MetricsSink(recorder, agent="ann", tz="Europe/Berlin")
    play(recorder, "c1", START, CALL[:2])
    assert not sink.analytics("c1", {})
    assert sink.analytics("c1", FIGURES)
