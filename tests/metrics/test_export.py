"""`offhook metrics export` copies calls by column name: stores with more or fewer columns than it knows."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from offhook.metrics import export, store
from offhook.metrics.report import ReportQuery, build, open_sources
from tests.metrics.calls import play

START = datetime(2026, 3, 10, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
HELD_CALL = [("answered", 5), ("hold_started", 20), ("hold_ended", 50), ("hung_up", 100), ("wrap_up_ended", 110)]


def rows(path: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def talk_mean(path: Path) -> float | None:
    sources = open_sources([path])
    try:
        return build(sources, ReportQuery()).total.talk.mean
    finally:
        for conn in sources:
            conn.close()


def test_export_ignores_columns_it_does_not_know(data_dir: Path, tmp_path: Path) -> None:
    with store.CallRecorder() as rec:
        play(rec, "c1", START, HELD_CALL)
        path = rec.path
    conn = sqlite3.connect(path)  # columns a later offhook might add, at the end of both tables
    conn.execute("ALTER TABLE calls ADD COLUMN queue TEXT DEFAULT 'sales'")
    conn.execute("ALTER TABLE holds ADD COLUMN reason TEXT DEFAULT 'consult'")
    conn.close()
    target = tmp_path / "out.offhook"
    assert export.export(path, target, ReportQuery()) == 1
    assert rows(target, "SELECT call_id, agent FROM calls") == [("c1", "ann")]
    assert rows(target, "SELECT seq, end_mono - start_mono FROM holds") == [(1, 30.0)]
    assert talk_mean(target) == 65.0


def test_export_of_a_store_with_fewer_columns(tmp_path: Path) -> None:
    # A store made by the first schema only (an older offhook), read without migrating it.
    path = tmp_path / "v1.sqlite3"
    with store.CallRecorder(path) as rec:
        play(rec, "c1", START, HELD_CALL)
    old = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(old)
    conn.executescript(store.MIGRATIONS[1])
    v1 = [name for _, name, *_ in conn.execute("PRAGMA table_info(calls)")]
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00+00:00')")
    conn.execute("INSERT INTO meta VALUES ('store_id', 'old-store')")
    conn.execute("ATTACH DATABASE ? AS new", (str(path),))
    conn.execute(f"INSERT INTO calls ({', '.join(v1)}) SELECT {', '.join(v1)} FROM new.calls")
    conn.execute("INSERT INTO holds SELECT * FROM new.holds")
    conn.commit()
    conn.close()
    target = tmp_path / "out.offhook"
    assert export.export(old, target, ReportQuery()) == 1
    assert rows(target, "SELECT call_id FROM calls") == [("c1",)]
    assert rows(target, "SELECT count(*) FROM holds") == [(1,)]
    assert talk_mean(target) == 65.0
