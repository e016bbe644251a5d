"""`offhook report` over 1,000,000 calls: wall time and peak memory of the real command.

The store is generated directly in SQL (one recursive INSERT … SELECT, a few seconds),
with the same schema the recorder writes: 20 agents over a year, realistic mixes of
missed/abandoned/transferred/escalated calls and holds. The command runs as a
subprocess so its peak RSS (ru_maxrss of RUSAGE_CHILDREN) is its own. The reference,
measured in the same run on the same file, is the floor any report pays: one plain
``SELECT count(*), avg(…)`` pass over the table, and the interpreter's own start-up.
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

_GENERATE = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :calls - 1),
r AS (
    SELECT i,
           1767225600.0 + i * (31536000.0 / :calls) AS wall,       -- spread over 2026 (UTC)
           abs(random()) % 100 AS kind,
           5 + abs(random()) % 40 AS ring,
           60 + abs(random()) % 600 AS talk,
           CASE WHEN abs(random()) % 4 = 0 THEN abs(random()) % 240 ELSE 0 END AS hold,
           abs(random()) % 90 AS wrap
    FROM n
)
INSERT INTO calls (call_id, agent, tz, direction, number, ring_wall, local_start, local_day, ring_mono,
                   answer_mono, end_mono, wrap_mono, outcome, completed, ring_s, talk_s, hold_s, wrap_s,
                   holds, long_holds, summary)
SELECT printf('bench-%d', i), printf('agent%02d', i % :agents), 'UTC',
       CASE WHEN kind < 80 THEN 'inbound' ELSE 'outbound' END, NULL,
       wall, strftime('%Y-%m-%dT%H:%M:%S+00:00', wall, 'unixepoch'), strftime('%Y-%m-%d', wall, 'unixepoch'), i,
       CASE WHEN kind >= 8 THEN i + ring END, i + ring + talk + hold, i + ring + talk + hold + wrap,
       CASE WHEN kind < 5 THEN 'missed' WHEN kind < 8 THEN 'abandoned' WHEN kind < 12 THEN 'transferred'
            WHEN kind < 14 THEN 'escalated' ELSE 'answered' END,
       1, ring,
       CASE WHEN kind >= 8 THEN talk END, CASE WHEN kind >= 8 THEN hold END, CASE WHEN kind >= 8 THEN wrap END,
       CASE WHEN kind >= 8 AND hold > 0 THEN 1 ELSE 0 END, CASE WHEN kind >= 8 AND hold > 120 THEN 1 ELSE 0 END,
       CASE WHEN kind >= 8
            THEN printf('%d,%d,%d,%d,%d,%d,%d,%d,0',
                        CASE WHEN kind < 12 THEN 3 WHEN kind < 14 THEN 4 ELSE 0 END,
                        ring * 1000, talk * 1000, hold * 1000, wrap * 1000, hold > 0, hold > 120,
                        CAST(strftime('%H', wall, 'unixepoch') AS INTEGER))
            ELSE printf('%d,%d,0,0,0,0,0,%d,0', CASE WHEN kind < 5 THEN 1 ELSE 2 END,
                        ring * 1000, CAST(strftime('%H', wall, 'unixepoch') AS INTEGER)) END
FROM r
"""


def generate(path: Path, calls: int = CALLS) -> None:
    conn = connect(path, create=True)
    conn.execute("PRAGMA synchronous = OFF")  # bulk load; the recorder itself always writes with FULL
    conn.execute("BEGIN")
    conn.execute(_GENERATE, {"calls": calls, "agents": AGENTS})
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _run_child(argv: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MB) of one child process, measured with wait4()."""
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
        return elapsed, usage.ru_maxrss / 1024, out.read()


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
    with tempfile.TemporaryDirectory(prefix="offhook-bench-") as tmp:
        db = Path(tmp) / "metrics.sqlite3"
        started = time.perf_counter()
        generate(db)
        figures.append(Figure("metrics", "generate 1M calls (SQL)", time.perf_counter() - started, "s"))
        offhook = [sys.executable, "-m", "offhook.cli"]
        # The floor: interpreter start-up plus one aggregate pass in SQLite over the same rows.
        floor_code = (
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]);"
            "print(c.execute('SELECT count(*), avg(ring_s), avg(talk_s), avg(hold_s), avg(wrap_s) FROM calls"
            " WHERE completed = 1').fetchone())"
        )
        floor_s, floor_mb, _ = _run_child([sys.executable, "-c", floor_code, str(db)])
        reference = f"SELECT count/avg pass: {floor_s:.2f} s, {floor_mb:.0f} MB"
        runs = {
            "report (total)": [],
            "report --by day": ["--by", "day"],
            "report --by agent": ["--by", "agent"],
            "report --by hour": ["--by", "hour"],
            "report --by day --chart": ["--by", "day", "--chart", str(Path(tmp) / "chart.png")],
        }
        for name, extra in runs.items():
            elapsed, peak, out = _run_child([*offhook, "report", "--db", str(db), "--format", "csv", *extra])
            assert out.count("\n") > 1, out
            figures.append(Figure("metrics", f"{name}, 1M calls: time", elapsed, "s", reference, f"< {GOAL_S:g} s"))
            figures[-1].met = elapsed < GOAL_S
            figures.append(Figure("metrics", f"{name}: peak RSS", peak, "MB", reference, f"< {GOAL_MB:g} MB"))
            figures[-1].met = peak < GOAL_MB
        with sqlite3.connect(db) as conn:
            size = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
        figures.append(Figure("metrics", "store size, 1M calls", size / 1e6, "MB"))
    return figures
