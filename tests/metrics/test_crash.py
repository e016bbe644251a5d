"""Crash safety: kill -9 the writer at random moments, again and again.

After every kill the database must open cleanly (integrity check), hold every call
the writer reported completed, each exactly once, with its figures; the next writer
resumes the calls left in progress by Call-ID and never duplicates one.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def kill_loop(db: Path, kills: int, seed: int) -> tuple[set[str], int]:
    rng = random.Random(seed)
    done: set[str] = set()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    for _ in range(kills):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.metrics.crash_writer", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO_ROOT,
        )
        assert writer.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=lines.extend, args=(writer.stdout,), daemon=True)
        reader.start()
        # From "still importing" to "deep in a transaction": 0.05 s to 0.8 s after start.
        time.sleep(rng.uniform(0.05, 0.8))
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        reader.join(timeout=30)
        stderr = writer.stderr.read() if writer.stderr else ""
        assert writer.returncode == -signal.SIGKILL, stderr  # it was killed, it did not fail on its own
        done.update(line.split()[1] for line in lines if line.startswith("done "))
        check(db, done)
    return done, kills


def check(db: Path, done: set[str]) -> None:
    if not db.exists():
        assert not done
        return
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        if not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            assert not done  # killed before the schema was committed: the next open creates it
            return
        rows = conn.execute("SELECT call_id, completed, talk_s, hold_s, wrap_s, summary, holds FROM calls").fetchall()
    finally:
        conn.close()
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids)), "a call was recorded twice"
    completed = {row[0]: row for row in rows if row[1] == 1}
    missing = done - completed.keys()
    assert not missing, f"completed calls lost by the kill: {sorted(missing)[:5]}"
    for call_id, _, talk_s, hold_s, wrap_s, summary, holds in completed.values():
        assert talk_s is not None and hold_s is not None and wrap_s is not None and summary, call_id
        assert holds <= 2, call_id  # a resumed call never gains holds it did not have


def finish(db: Path) -> None:
    """One writer that is allowed to run a moment: it completes every call left in progress."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.metrics.crash_writer", str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=REPO_ROOT,
    )
    assert writer.stdout is not None
    for _ in range(3):  # the resumed calls come first, then new ones
        writer.stdout.readline()
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    conn = sqlite3.connect(db)
    try:
        started = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
        open_calls = conn.execute("SELECT count(*) FROM calls WHERE completed = 0").fetchone()[0]
    finally:
        conn.close()
    assert open_calls <= 1  # at most the one new call the last kill interrupted
    assert started > 0


def test_kill_9_loop(tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite3"
    done, _ = kill_loop(db, kills=20, seed=1)
    assert done, "the writer never completed a call: the test proves nothing"
    finish(db)
    check(db, done)


@pytest.mark.slow
def test_kill_9_loop_long(tmp_path: Path) -> None:
    db = tmp_path / "metrics.sqlite3"
    done, _ = kill_loop(db, kills=300, seed=2)
    finish(db)
    check(db, done)
