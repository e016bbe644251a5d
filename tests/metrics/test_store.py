"""The store: durability settings, schema versions, idempotent events, resume, privacy, export."""

from __future__ import annotations

import sqlite3
import stat
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from offhook.metrics import export, privacy, store
from offhook.metrics.report import ReportQuery, build, open_sources
from offhook.metrics.store import CallRecorder, MetricsError, OpenCall
from tests.metrics.calls import MONO0, play

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 3, 10, 9, 0, tzinfo=BERLIN)
FULL_CALL = [("answered", 5), ("hold_started", 20), ("hold_ended", 50), ("hung_up", 100), ("wrap_up_ended", 110)]


def rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


def test_default_path_follows_env(data_dir: Path, recorder: CallRecorder) -> None:
    assert recorder.path == data_dir / "metrics.sqlite3"
    assert recorder.path.is_file()


def test_wal_full_sync_and_schema_version(recorder: CallRecorder) -> None:
    assert recorder.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert recorder.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    versions = rows(recorder.path, "SELECT version FROM schema_version ORDER BY version")
    assert versions == [(v,) for v in range(1, store.SCHEMA_VERSION + 1)]


def test_refuses_newer_schema_and_foreign_files(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    CallRecorder(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'future')")
    with pytest.raises(MetricsError, match="schema version 99"):
        CallRecorder(newer)
    foreign = tmp_path / "other.sqlite3"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(MetricsError, match="not an offhook metrics database"):
        store.connect(foreign, readonly=True)
    with pytest.raises(MetricsError, match="not an offhook metrics database"):
        CallRecorder(foreign)  # the recorder never adds its tables to someone else's database
    assert rows(foreign, "SELECT name FROM sqlite_master") == [("t",)]
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(MetricsError, match="not a usable metrics database"):
        store.connect(garbage, readonly=True)


def test_replayed_events_change_nothing(recorder: CallRecorder) -> None:
    play(recorder, "c1", START, FULL_CALL)
    before = rows(recorder.path, "SELECT * FROM calls")
    holds = rows(recorder.path, "SELECT * FROM holds")
    # A restarted daemon replays everything it knows about the call: nothing changes.
    play(recorder, "c1", START, FULL_CALL)
    assert recorder.answered("c1", wall=START, mono=MONO0 + 99) is False
    assert rows(recorder.path, "SELECT * FROM calls") == before
    assert rows(recorder.path, "SELECT * FROM holds") == holds


def test_resume_a_call_in_progress_after_restart(data_dir: Path) -> None:
    with CallRecorder() as first:
        play(first, "sip-123@pbx", START, [("answered", 5), ("hold_started", 20)])
    with CallRecorder() as second:  # the daemon restarted
        assert second.open_calls() == [
            OpenCall("sip-123@pbx", "ann", "inbound", answered=True, on_hold=True, hung_up=False, outcome="answered")
        ]
        assert (
            second.ringing(
                "sip-123@pbx", agent="ann", direction="inbound", number=None, tz="Europe/Berlin", wall=START, mono=MONO0
            )
            is False
        )
        for name, t in [("hold_ended", 50), ("hung_up", 100), ("wrap_up_ended", 110)]:
            assert getattr(second, name)("sip-123@pbx", wall=START.timestamp() + t, mono=MONO0 + t)
        assert second.open_calls() == []
    assert rows(data_dir / "metrics.sqlite3", "SELECT count(*), sum(completed), talk_s, hold_s FROM calls") == [
        (1, 1, 65.0, 30.0)
    ]


def test_event_order_guards(recorder: CallRecorder) -> None:
    play(recorder, "c", START, [])
    assert recorder.hold_started("c", wall=START, mono=MONO0 + 1) is False  # not answered yet
    assert recorder.wrap_up_ended("c", wall=START, mono=MONO0 + 1) is False  # not hung up
    assert recorder.transferred("c", wall=START, mono=MONO0 + 1) is False  # never answered
    assert recorder.answered("c", wall=START, mono=MONO0 + 3)
    assert recorder.missed("c", wall=START, mono=MONO0 + 4) is False  # answered calls are not missed
    assert recorder.escalated("c", wall=START, mono=MONO0 + 5)
    assert recorder.transferred("c", wall=START, mono=MONO0 + 6) is False  # escalation outranks transfer
    assert recorder.answered("unknown", wall=START, mono=MONO0) is False


def test_bad_events_are_refused_and_change_nothing(recorder: CallRecorder) -> None:
    for kwargs, message in (
        ({"direction": "sideways"}, "direction"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"wall": datetime(2026, 3, 10, 9, 0)}, "timezone-aware"),
        ({"wall": "yesterday"}, "datetime or epoch"),
    ):
        args = {"agent": "ann", "direction": "inbound", "number": None, "tz": "UTC", "wall": 0.0, "mono": 1.0}
        args.update(kwargs)
        with pytest.raises(MetricsError, match=message):
            recorder.ringing("c", **args)  # type: ignore[arg-type]
    assert rows(recorder.path, "SELECT count(*) FROM calls") == [(0,)]


def test_numbers_are_hashed_with_a_private_salt(recorder: CallRecorder, data_dir: Path) -> None:
    play(recorder, "c1", START, [("missed", 3)], number="sip:+49 30 1234567@pbx.example")
    play(recorder, "c2", START, [("missed", 3)], number="+49301234567")
    (n1,), (n2,) = rows(recorder.path, "SELECT number FROM calls ORDER BY id")
    assert n1 == n2 and n1.startswith(privacy.HASH_PREFIX)
    assert "1234567" not in n1
    salt = data_dir / privacy.SALT_NAME
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    assert salt.read_bytes().hex() not in repr(recorder.numbers)
    # Another install (another salt) gives another value: a copied database alone reveals nothing.
    other = privacy.NumberPolicy("hash", data_dir / "other-salt")
    assert other.store("+49301234567") != n1


def test_number_policies(tmp_path: Path) -> None:
    assert privacy.NumberPolicy("plain", tmp_path / "s").store("tel:+1 (555) 010-9999") == "+15550109999"
    assert privacy.NumberPolicy("drop", tmp_path / "s").store("+15550109999") is None
    assert not (tmp_path / "s").exists()  # no salt needed, none created
    with pytest.raises(ValueError, match="number policy"):
        privacy.NumberPolicy("rot13", tmp_path / "s")


def test_purge_keeps_recent_and_open_calls(recorder: CallRecorder) -> None:
    old = datetime(2025, 1, 10, 9, 0, tzinfo=BERLIN)
    play(recorder, "old", old, FULL_CALL, number="+4930111")
    play(recorder, "old-open", old, [("answered", 5)], number="+4930222")
    play(recorder, "new", START, FULL_CALL, number="+4930333")
    now = START.timestamp() + 3600
    assert recorder.purge(older_than_days=90, numbers_only=True, now=now) == 1
    assert rows(recorder.path, "SELECT call_id, number IS NULL FROM calls ORDER BY id") == [
        ("old", 1),
        ("old-open", 0),
        ("new", 0),
    ]
    assert recorder.purge(older_than_days=90, now=now) == 1
    assert rows(recorder.path, "SELECT call_id FROM calls ORDER BY id") == [("old-open",), ("new",)]
    assert rows(recorder.path, "SELECT count(*) FROM holds") == [(1,)]  # the purged call's hold went with it


def test_export_round_trip_and_double_counting_refused(recorder: CallRecorder, tmp_path: Path) -> None:
    play(recorder, "c1", START, FULL_CALL, number="+4930111")
    play(recorder, "c2", START.replace(day=11), FULL_CALL)
    play(recorder, "open", START, [("answered", 5)])
    target = tmp_path / "ann-march.offhook"
    count = export.export(recorder.path, target, ReportQuery(until=START.date()))
    assert count == 1
    info = export.describe(target)
    assert (info["format"], info["format_version"], info["calls"]) == (export.FORMAT, "1", "1")
    assert rows(target, "SELECT call_id, number FROM calls") == [("c1", None)]
    assert rows(target, "SELECT count(*) FROM holds") == [(1,)]
    assert not Path(f"{target}-wal").exists()  # one self-contained file
    sources = open_sources([target])
    assert build(sources, ReportQuery()).total.talk.mean == 65.0
    with pytest.raises(MetricsError, match="exists"):
        export.export(recorder.path, target, ReportQuery())
    with pytest.raises(MetricsError, match="same store"):
        open_sources([recorder.path, target])
