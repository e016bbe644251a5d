"""`offhook report` over 1,000,000 calls: wall time and peak memory of the real command.

The store is generated directly in SQL (one recursive INSERT … SELECT, about 20 s), with
the schema and the row shape the recorder writes: 20 agents in five time zones over a
year, realistic mixes of missed/abandoned/transferred/escalated calls and holds. Its size
per call is printed beside that of 20,000 calls recorded through CallRecorder itself, event
by event (the figure docs/metrics.md quotes). The command runs as a subprocess so its peak
RSS (ru_maxrss of RUSAGE_CHILDREN) is its own. The reference, measured in the same run on
the same file, is the floor any report pays: one plain ``SELECT count(*), avg(…)`` pass over
the table, and the interpreter's own start-up.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offhook.metrics.store import connect
from tests.bench.figures import Figure

CALLS = 1_000_000
AGENTS = 20
GOAL_S = 2.0
GOAL_MB = 200.0

# Five agent time zones, one of them half an hour off UTC and two of them south/west of it, so
# `--by hour` meets every (local hour, UTC offset) pair a real multi-site centre has.
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "America/Los_Angeles")
YEAR_START = 1767225600  # 2026-01-01 00:00 UTC
HOURS = 366 * 24

# Rows shaped like the recorder's (see recorder_rows): 16-hex-digit SIP Call-IDs as baresip makes
# them, keyed-hash customer numbers (h1: + 64 hex), every wall and monotonic reading with a
# fraction (a whole-number REAL would be stored in 1-3 bytes instead of 8), local start with its
# offset, a hold row for every held call. The offset comes from zoneinfo via the tz_hours table.
_GENERATE = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :calls - 1),
-- MATERIALIZED: each random() is drawn once per call, however often the column is used below
c AS MATERIALIZED (
    SELECT i,
           :start + i * (31536000.0 / :calls) + (abs(random()) % 1000000) / 1e6 AS wall,  -- spread over 2026
           abs(random()) % 100 AS kind,
           5 + (abs(random()) % 40000) / 1000.0 + 0.0001 AS ring,
           60 + (abs(random()) % 600000) / 1000.0 + 0.0001 AS talk,
           CASE WHEN abs(random()) % 4 = 0 THEN 1 + (abs(random()) % 240000) / 1000.0 + 0.0001 ELSE 0 END AS hold,
           (abs(random()) % 90000) / 1000.0 + 0.0001 AS wrap
    FROM n
),
r AS (
    SELECT i, wall, o.zone AS zone, o.offset_min AS off, wall + o.offset_min * 60 AS local,
           kind, ring, talk, hold, wrap, 86400.0 + i * (31536000.0 / :calls) + 0.123456789 AS mono
    FROM c JOIN tz_hours o ON o.zone = (c.i % :agents) % :zones AND o.hour = CAST((c.wall - :start) / 3600 AS INTEGER)
)
INSERT INTO calls (call_id, agent, tz, direction, number, ring_wall, local_start, local_day, ring_mono,
                   answer_mono, answer_wall, end_mono, end_wall, wrap_mono, wrap_wall, outcome, completed,
                   ring_s, talk_s, hold_s, wrap_s, holds, long_holds, summary)
SELECT printf('%08x%08x', abs(random()) % 4294967296, i), printf('agent%02d', i % :agents),
       CASE zone WHEN 0 THEN :z0 WHEN 1 THEN :z1 WHEN 2 THEN :z2 WHEN 3 THEN :z3 ELSE :z4 END,
       CASE WHEN kind < 80 THEN 'inbound' ELSE 'outbound' END, 'h1:' || lower(hex(randomblob(32))),
       wall,
       strftime('%Y-%m-%dT%H:%M:%S', local, 'unixepoch')
           || printf('%s%02d:%02d', CASE WHEN off < 0 THEN '-' ELSE '+' END, abs(off) / 60, abs(off) % 60),
       strftime('%Y-%m-%d', local, 'unixepoch'), mono,
       CASE WHEN kind >= 8 THEN mono + ring END, CASE WHEN kind >= 8 THEN wall + ring END,
       CASE WHEN kind >= 8 THEN mono + ring + talk + hold ELSE mono + ring END,
       CASE WHEN kind >= 8 THEN wall + ring + talk + hold ELSE wall + ring END,
       CASE WHEN kind >= 8 THEN mono + ring + talk + hold + wrap END,
       CASE WHEN kind >= 8 THEN wall + ring + talk + hold + wrap END,
       CASE WHEN kind < 5 THEN 'missed' WHEN kind < 8 THEN 'abandoned' WHEN kind < 12 THEN 'transferred'
            WHEN kind < 14 THEN 'escalated' ELSE 'answered' END,
       1, ring,
       CASE WHEN kind >= 8 THEN talk END, CASE WHEN kind >= 8 THEN hold END, CASE WHEN kind >= 8 THEN wrap END,
       CASE WHEN kind >= 8 AND hold > 0 THEN 1 ELSE 0 END, CASE WHEN kind >= 8 AND hold > 120 THEN 1 ELSE 0 END,
       CASE WHEN kind >= 8
            THEN printf('%d,%d,%d,%d,%d,%d,%d,%d,%d',
                        CASE WHEN kind < 12 THEN 3 WHEN kind < 14 THEN 4 ELSE 0 END,
                        round(ring * 1000), round(talk * 1000), round(hold * 1000), round(wrap * 1000),
                        hold > 0, hold > 120, CAST(strftime('%H', local, 'unixepoch') AS INTEGER), off)
            ELSE printf('%d,%d,0,0,0,0,0,%d,%d', CASE WHEN kind < 5 THEN 1 ELSE 2 END,
                        round(ring * 1000), CAST(strftime('%H', local, 'unixepoch') AS INTEGER), off) END
FROM r
"""
_GENERATE_HOLDS = """
INSERT INTO holds (call, seq, start_mono, start_wall, end_mono, end_wall)
SELECT id, 1, answer_mono + 30.25, answer_wall + 30.25, answer_mono + 30.25 + hold_s, answer_wall + 30.25 + hold_s
FROM calls WHERE holds = 1
"""


def _tz_hours(conn: sqlite3.Connection) -> None:
    """Each zone's UTC offset (minutes) for every hour of the year: the zones change on whole UTC hours."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    conn.execute(
        "CREATE TEMP TABLE tz_hours (zone INTEGER, hour INTEGER, offset_min INTEGER, PRIMARY KEY (zone, hour))"
    )
    start = datetime.fromtimestamp(YEAR_START, UTC)
    rows = []
    for index, name in enumerate(ZONES):
        tz = ZoneInfo(name)
        for hour in range(HOURS):
            offset = (start + timedelta(hours=hour)).astimezone(tz).utcoffset()
            rows.append((index, hour, int(offset.total_seconds() // 60) if offset else 0))
    conn.executemany("INSERT INTO temp.tz_hours VALUES (?, ?, ?)", rows)


def generate(path: Path, calls: int = CALLS) -> None:
    conn = connect(path, create=True)
    conn.execute("PRAGMA synchronous = OFF")  # bulk load; the recorder itself always writes with FULL
    _tz_hours(conn)
    conn.execute("BEGIN")
    zones = {f"z{i}": name for i, name in enumerate(ZONES)}
    conn.execute(_GENERATE, {"calls": calls, "agents": AGENTS, "zones": len(ZONES), "start": YEAR_START, **zones})
    conn.execute(_GENERATE_HOLDS)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def recorder_rows(path: Path, calls: int = 20_000) -> None:
    """Calls recorded through CallRecorder itself, event by event, with the generator's mix."""
    import random

    from offhook.metrics.store import CallRecorder

    rng = random.Random(18)
    with CallRecorder(path) as rec:
        rec.conn.execute("PRAGMA synchronous = OFF")  # the layout is the same; only durability is off
        for n in range(calls):
            call_id = f"{rng.getrandbits(64):016x}"
            wall = YEAR_START + n * (31536000.0 / calls) + rng.random()
            mono = 86400.0 + n * (31536000.0 / calls) + rng.random()
            kind = rng.randrange(100)
            rec.ringing(
                call_id,
                agent=f"agent{n % AGENTS:02d}",
                direction="inbound" if kind < 80 else "outbound",
                number=f"+4930{rng.randrange(10**7):07d}",
                tz=ZONES[n % AGENTS % len(ZONES)],
                wall=wall,
                mono=mono,
            )
            t = 5 + rng.random() * 40
            if kind < 8:
                (rec.missed if kind < 5 else rec.abandoned)(call_id, wall=wall + t, mono=mono + t)
                continue
            rec.answered(call_id, wall=wall + t, mono=mono + t)
            t += 60 + rng.random() * 600
            if kind % 4 == 0:
                rec.hold_started(call_id, wall=wall + t, mono=mono + t)
                t += 1 + rng.random() * 240
                rec.hold_ended(call_id, wall=wall + t, mono=mono + t)
            if kind < 14:
                (rec.transferred if kind < 12 else rec.escalated)(call_id, wall=wall + t, mono=mono + t)
            rec.hung_up(call_id, wall=wall + t, mono=mono + t)
            t += rng.random() * 90
            rec.wrap_up_ended(call_id, wall=wall + t, mono=mono + t)
        rec.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _size(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0])


def _run_child(argv: list[str]) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MB) of one child process, from wait4().

    The CPU time barely moves when other work shares the machine; the wall time is the goal's measure.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{argv} failed: {err.read().strip()}")
        return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.read()


def recorder_latency(path: Path, calls: int = 200, synchronous: str = "FULL") -> tuple[float, float]:
    """Mean and 99th-percentile milliseconds per recorder event (each one a durable transaction)."""
    import numpy as np

    from offhook.metrics.store import CallRecorder

    latencies = []
    with CallRecorder(path) as rec:
        rec.conn.execute(f"PRAGMA synchronous = {synchronous}")
        for n in range(calls):
            call_id = f"lat-{n}"
            started = time.perf_counter()
            rec.ringing(call_id, agent="ann", direction="inbound", number="+4930123", tz="UTC", wall=1.8e9, mono=n)
            latencies.append(time.perf_counter() - started)
            for i, name in enumerate(("answered", "hold_started", "hold_ended", "hung_up", "wrap_up_ended"), 1):
                started = time.perf_counter()
                getattr(rec, name)(call_id, wall=1.8e9 + i, mono=n + i)
                latencies.append(time.perf_counter() - started)
    values = np.array(latencies) * 1000
    return float(values.mean()), float(np.percentile(values, 99))


def run() -> list[Figure]:
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="offhook-bench-") as tmp:
        full_mean, full_p99 = recorder_latency(Path(tmp) / "full.sqlite3")
        normal_mean, _ = recorder_latency(Path(tmp) / "normal.sqlite3", synchronous="NORMAL")
        reference = f"synchronous=NORMAL (not durable): {normal_mean:.2f} ms"
        figures.append(Figure("metrics", "recorder event, durable: mean", full_mean, "ms", reference))
        figures.append(Figure("metrics", "recorder event, durable: p99", full_p99, "ms", reference))
        recorded = Path(tmp) / "recorded.sqlite3"
        recorder_rows(recorded)
        per_call = _size(recorded) / 20_000
        figures.append(Figure("metrics", "store size per call, 20k calls by the recorder", per_call, "B"))
    with tempfile.TemporaryDirectory(prefix="offhook-bench-") as tmp:
        db = Path(tmp) / "metrics.sqlite3"
        started = time.perf_counter()
        generate(db)
        figures.append(Figure("metrics", "generate 1M calls (SQL)", time.perf_counter() - started, "s"))
        figures.append(
            Figure(
                "metrics",
                "store size per call, 1M generated calls",
                _size(db) / CALLS,
                "B",
                f"recorder rows: {per_call:.0f} B",
            )
        )
        offhook = [sys.executable, "-m", "offhook.cli"]
        # The floor: interpreter start-up plus one aggregate pass in SQLite over the same rows.
        floor_code = (
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);"
            "print(c.execute('SELECT count(*), avg(ring_s), avg(talk_s), avg(hold_s), avg(wrap_s) FROM calls"
            " WHERE completed = 1').fetchone())"
        )
        floor_s, floor_cpu, floor_mb, _ = _run_child([sys.executable, "-c", floor_code, str(db)])
        reference = f"SELECT count/avg pass: {floor_s:.2f} s ({floor_cpu:.2f} s CPU), {floor_mb:.0f} MB"
        runs = {
            "report (total)": [],
            "report --by day": ["--by", "day"],
            "report --by agent": ["--by", "agent"],
            f"report --by hour ({len(ZONES)} zones)": ["--by", "hour"],
            "report --by day --chart": ["--by", "day", "--chart", str(Path(tmp) / "chart.png")],
        }
        for name, extra in runs.items():
            elapsed, cpu, peak, out = _run_child([*offhook, "report", "--db", str(db), "--format", "csv", *extra])
            assert out.count("\n") > 1, out
            rows = f", {out.count(chr(10)) - 2:,} rows" if extra else ""
            figures.append(
                Figure("metrics", f"{name}, 1M calls{rows}: time", elapsed, "s", reference, f"< {GOAL_S:g} s")
            )
            figures[-1].met = elapsed < GOAL_S
            figures.append(Figure("metrics", f"{name}: CPU (user + system)", cpu, "s", reference))
            figures.append(Figure("metrics", f"{name}: peak RSS", peak, "MB", reference, f"< {GOAL_MB:g} MB"))
            figures[-1].met = peak < GOAL_MB
        figures.append(Figure("metrics", "store size, 1M calls", _size(db) / 1e6, "MB"))
    return figures
