"""Reports with conversation analytics columns: null-safe means in every shape (agent, day, hour; CSV, JSON)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from offhook.audio.analytics import missed_checkins
from offhook.cli import main
from offhook.metrics.report import FLAT_FIELDS, ReportQuery, build
from offhook.metrics.store import CallRecorder
from tests.metrics.calls import MONO0, play

BERLIN = ZoneInfo("Europe/Berlin")
DAY1 = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)
CALL = [("answered", 5), ("hung_up", 100), ("wrap_up_ended", 110)]
LONG_HOLD = [("answered", 5), ("hold_started", 10), ("hold_ended", 200), ("hung_up", 300), ("wrap_up_ended", 310)]


def figures(share: float | None, dead_air: float, overtalk: float) -> dict:
    return {"connected_s": 95.0, "agent_share": share, "dead_air_s": dead_air, "overtalk_s": overtalk,
            "response_median_s": 0.5, "quality": {"noise_floor_dbfs": -60.0}}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Path:
    with CallRecorder(tmp_path / "m.sqlite3") as rec:
        play(rec, "a1", DAY1, CALL)
        rec.analytics("a1", figures(0.4, 6.0, 1.0))
        play(rec, "a2", DAY1 + timedelta(hours=1), CALL)
        rec.analytics("a2", figures(None, 2.0, 3.0))  # a figure without a value: left out of its mean
        play(rec, "a3", DAY1 + timedelta(days=1), LONG_HOLD)  # no pipeline: null, not zero
        play(rec, "b1", DAY1, CALL, agent="bob")
        rec.analytics("b1", figures(0.8, 0.0, 0.0))
        play(rec, "m1", DAY1, [("missed", 20)])
        return rec.path


def test_means_skip_calls_without_figures(store: Path) -> None:
    with CallRecorder(store) as rec:
        report = build([rec.conn], ReportQuery(by="agent"))
        ann, bob = report.rows
        assert ann.flat()["analytics_calls"] == 2 and ann.flat()["agent_share_mean"] == 0.4
        assert ann.flat()["dead_air_s_mean"] == 4.0 and ann.flat()["overtalk_s_mean"] == 2.0
        assert bob.flat()["agent_share_mean"] == 0.8 and bob.flat()["dead_air_s_mean"] == 0.0  # a real zero
        total = report.total.flat()
        assert total["analytics_calls"] == 3 and total["agent_share_mean"] == 0.6
        assert total["dead_air_s_mean"] == pytest.approx(8.0 / 3, abs=0.001)
        assert total["noise_floor_dbfs_mean"] == -60.0 and total["echo_reduction_db_mean"] is None
        days = {row.group: row.flat() for row in build([rec.conn], ReportQuery(by="day")).rows}
        assert days["2026-03-10"]["analytics_calls"] == 3
        assert days["2026-03-11"]["analytics_calls"] == 0 and days["2026-03-11"]["agent_share_mean"] is None
        hours = {row.group: row.flat() for row in build([rec.conn], ReportQuery(by="hour")).rows}
        assert hours["2026-03-10T09:00+01:00"]["agent_share_mean"] == 0.6  # a1 and b1
        assert hours["2026-03-10T10:00+01:00"]["agent_share_mean"] is None  # a2 has no share
        assert hours["2026-03-10T10:00+01:00"]["dead_air_s_mean"] == 2.0


def test_checkin_compliance_is_the_long_hold_computation(store: Path) -> None:
    with CallRecorder(store) as rec:
        holds = rec.conn.execute("SELECT start_mono, end_mono FROM holds").fetchall()
        report = build([rec.conn], ReportQuery(by="day"))
    assert missed_checkins(holds) == report.total.long_holds == 1
    days = {row.group: row.flat() for row in report.rows}
    assert days["2026-03-11"]["checkin_compliance"] == 0.0
    assert days["2026-03-10"]["checkin_compliance"] is None  # no holds: no rate
    assert MONO0 > 0


def test_csv_json_and_table_carry_the_columns(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--db", str(store), "--by", "agent", "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(table[0]) == list(FLAT_FIELDS)
    assert table[0]["agent_share_mean"] == "0.4" and table[-1]["analytics_calls"] == "3"
    assert main(["report", "--db", str(store), "--by", "day", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["groups"][1]["dead_air_s_mean"] is None and data["total"]["agent_share_mean"] == 0.6
    assert main(["report", "--db", str(store), "--by", "agent"]) == 0
    out = capsys.readouterr().out
    assert "metered" in out and "60%" in out and "check-ins" in out  # headers wrap on a narrow terminal


def test_old_store_without_the_column_reports_nulls(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite3"
    with CallRecorder(path) as rec:
        play(rec, "x", DAY1, CALL)
    with sqlite3.connect(path, isolation_level=None) as raw:
        raw.execute("ALTER TABLE calls DROP COLUMN analytics")
        raw.execute("DELETE FROM schema_version WHERE version = 4")
    from offhook.metrics import store as store_module

    conn = store_module.connect(path, readonly=True)
    try:
        total = build([conn], ReportQuery()).total.flat()
    finally:
        conn.close()
    assert total["analytics_calls"] == 0 and total["agent_share_mean"] is None and total["handled"] == 1


def test_quality_chart_beside_the_chart(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "calls.png"
    assert main(["report", "--db", str(store), "--chart", str(chart), "--format", "csv"]) == 0
    err = capsys.readouterr().err
    quality = tmp_path / "calls-quality.png"
    assert f"chart written to {quality}" in err
    assert quality.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and quality.stat().st_size > 10_000


def test_no_quality_chart_without_metered_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with CallRecorder(tmp_path / "plain.sqlite3") as rec:
        play(rec, "p1", DAY1, CALL)
    chart = tmp_path / "calls.png"
    assert main(["report", "--db", str(tmp_path / "plain.sqlite3"), "--chart", str(chart), "--format", "csv"]) == 0
    capsys.readouterr()
    assert chart.exists() and not (tmp_path / "calls-quality.png").exists()
