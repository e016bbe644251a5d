"""A daemon restart never leaves a call open: the store's side (heartbeat, close, settle)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from offhook.metrics import store
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder

WALL0 = 1773129600.0


def answered(recorder: CallRecorder, call_id: str, mono: float) -> None:
    recorder.ringing(call_id, agent="ann", direction="inbound", number=None, tz="UTC", wall=WALL0, mono=mono)
    recorder.answered(call_id, wall=WALL0 + 2, mono=mono + 2)


def row(recorder: CallRecorder, call_id: str) -> sqlite3.Row:
    return recorder.conn.execute("SELECT * FROM calls WHERE call_id = ?", (call_id,)).fetchone()


def test_wrap_up_cut_by_a_restart_ends_at_the_old_runs_last_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    with CallRecorder(path) as old_run:
        answered(old_run, "c1", 100.0)
        old_run.hung_up("c1", wall=WALL0 + 60, mono=160.0)
        old_run.heartbeat(wall=WALL0 + 70, mono=170.0)  # then kill -9
    with CallRecorder(path) as new_run:
        sink = MetricsSink(new_run, agent="ann", tz="UTC", wall_clock=lambda: WALL0 + 500)
        assert sink.start_run() == ["c1"]  # no softphone needed for a hung-up call
        sink.heartbeat(7.0)  # the new run's clock (a power cut restarted it)
        call = row(new_run, "c1")
        assert (call["completed"], call["ended_by"], call["outcome"]) == (1, "restart", "answered")
        assert (call["talk_s"], call["hold_s"], call["wrap_s"]) == (58.0, 0.0, 10.0)
        assert call["wrap_wall"] == WALL0 + 70
        assert new_run.open_calls() == []


def test_calls_gone_from_the_softphone_close_and_live_ones_resume(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    with CallRecorder(path) as old_run:
        answered(old_run, "gone", 100.0)
        old_run.hold_started("gone", wall=WALL0 + 10, mono=110.0)
        answered(old_run, "live", 100.0)
        old_run.ringing("rang", agent="ann", direction="inbound", number=None, tz="UTC", wall=WALL0, mono=120.0)
        old_run.heartbeat(wall=WALL0 + 30, mono=130.0)
    with CallRecorder(path) as new_run:
        sink = MetricsSink(new_run, agent="ann", tz="UTC", wall_clock=lambda: WALL0 + 45)
        assert sink.start_run() == []
        closed = sink.settle({"live": (True, True)}, mono=145.0)  # live, and on hold now
        assert sorted(closed) == ["gone", "rang"]
        gone = row(new_run, "gone")
        assert (gone["ended_by"], gone["talk_s"], gone["hold_s"], gone["wrap_s"]) == ("restart", 8.0, 20.0, 0.0)
        assert (row(new_run, "rang")["outcome"], row(new_run, "rang")["ended_by"]) == ("abandoned", "restart")
        assert [c.call_id for c in new_run.open_calls()] == ["live"]
        assert new_run.open_calls()[0].on_hold  # the hold the old run did not see starts now
        assert new_run.hung_up("gone", wall=WALL0 + 50, mono=150.0) is False  # completed: counted once


def test_without_a_heartbeat_a_call_ends_at_its_last_reading(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    with CallRecorder(path) as old_run:
        answered(old_run, "c1", 100.0)
        old_run.hold_started("c1", wall=WALL0 + 5, mono=105.0)
        old_run.hold_ended("c1", wall=WALL0 + 9, mono=109.0)
    with CallRecorder(path) as new_run:
        sink = MetricsSink(new_run, agent="ann", tz="UTC", wall_clock=lambda: WALL0 + 99)
        sink.start_run()
        assert sink.settle({}, mono=1.0) == ["c1"]
        call = row(new_run, "c1")
        assert (call["talk_s"], call["hold_s"], call["wrap_s"], call["wrap_mono"]) == (3.0, 4.0, 0.0, 109.0)


def test_a_version_1_store_or_export_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    saved, store.SCHEMA_VERSION = store.SCHEMA_VERSION, 1
    try:
        store._migrate(conn, 0)
    finally:
        store.SCHEMA_VERSION = saved
    conn.close()
    reader = store.connect(path, readonly=True)  # reports and exports of older stores still open
    assert reader.execute("SELECT count(*) FROM calls").fetchone()[0] == 0
    reader.close()
    with CallRecorder(path) as daemon:  # the daemon migrates it
        versions = [v for (v,) in daemon.conn.execute("SELECT version FROM schema_version ORDER BY version")]
        assert versions == list(range(1, store.SCHEMA_VERSION + 1))
