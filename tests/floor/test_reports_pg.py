"""Floor reports over PostgreSQL equal the desks' SQLite reports on the same calls.

Three desks (two teams, three time zones, a DST change, one agent name on two desks, one direct
call between two desks) record varied calls in their own SQLite stores; their floor clients send
them through real Mosquitto to central, into PostgreSQL. Then every report shape is built both
ways, `offhook report FILE…` and `offhook report --db postgresql://…`, and compared value by value.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg

from offhook.floor import reports_pg
from offhook.floor.client import FloorClient
from offhook.metrics import report as R
from offhook.metrics.store import CallRecorder
from tests.floor.rig import REPO_ROOT, SITE, CentralTask, Mosquitto, count, run, until
from tests.floor.rig import query as sql_rows
from tests.floor.webrig import OFFHOOK

DESKS = [  # desk, team, time zone, agent
    ("desk-01", "blue", "Europe/Berlin", "ann"),
    ("desk-02", "blue", "America/New_York", "sam"),
    ("desk-03", "red", "UTC", "sam"),  # the same name at another desk: two agents, as in report.py
]
START = datetime(2026, 10, 24, 6, 0, tzinfo=UTC).timestamp()  # Berlin's DST ends on the 25th
SHARED_CALL = "direct-1@pbx"


def fill(recorder: CallRecorder, agent: str, tz: str, rng: random.Random, calls: int) -> None:
    """Varied calls: every outcome, holds past 2 minutes, times over three days and nights."""
    mono = 1000.0
    for n in range(calls):
        wall = START + rng.uniform(0, 3 * 86400)
        mono += 4000.0
        call = SHARED_CALL if n == 0 else f"{agent}-{tz}-{n}@pbx"
        kind = rng.choices(["answered", "missed", "abandoned", "transferred", "escalated"], [70, 10, 8, 8, 4])[0]
        number = f"+4930{rng.randrange(10**7):07d}"
        recorder.ringing(call, agent=agent, direction="inbound", number=number, tz=tz, wall=wall, mono=mono)
        t = rng.uniform(0.5, 40.0)
        if kind in ("missed", "abandoned"):
            getattr(recorder, kind)(call, wall=wall + t, mono=mono + t)
            continue
        recorder.answered(call, wall=wall + t, mono=mono + t)
        for _ in range(rng.choice([0, 0, 1, 2])):
            t += rng.uniform(5, 200)
            recorder.hold_started(call, wall=wall + t, mono=mono + t)
            t += rng.choice([rng.uniform(1, 100), rng.uniform(121, 400)])
            recorder.hold_ended(call, wall=wall + t, mono=mono + t)
        t += rng.uniform(10, 900)
        if kind in ("transferred", "escalated"):
            getattr(recorder, kind)(call, wall=wall + t, mono=mono + t)
        recorder.hung_up(call, wall=wall + t, mono=mono + t)
        if rng.random() < 0.7:  # the audio pipeline metered it (else the call has no figures: null)
            recorder.analytics(call, figures(rng, t))
        t += rng.uniform(0, 120)
        recorder.wrap_up_ended(call, wall=wall + t, mono=mono + t)


def figures(rng: random.Random, connected_s: float) -> dict[str, Any]:
    """A call's analytics as the pipeline returns them; some figures missing (null), as for a call
    without a customer turn to respond to."""

    def maybe(value: float) -> float | None:
        return None if rng.random() < 0.15 else value

    share = rng.uniform(0.1, 0.9)
    return {
        "connected_s": connected_s,
        "agent_share": share,
        "customer_share": 1 - share,
        "overtalk_count": rng.randrange(6),
        "overtalk_s": rng.uniform(0, 20),
        "dead_air_count": rng.randrange(4),
        "dead_air_s": rng.uniform(0, 30),
        "response_median_s": maybe(rng.uniform(0.2, 3)),
        "talking_while_muted_s": maybe(rng.uniform(0, 5)),
        "quality": {
            "noise_floor_dbfs": rng.uniform(-80, -40),
            "clipping_pct": maybe(rng.uniform(0, 2)),
            "echo_reduction_db": maybe(rng.uniform(10, 40)),
        },
    }


def flat(report: R.Report) -> list[list[Any]]:
    return [list(row) for row in report.flat_rows()]


def cli_json(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [*OFFHOOK, "report", *args, "--format", "json"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _unordered(warning: str) -> tuple[str, list[str]]:
    return warning.split(" is in ")[0], sorted(re.findall(r"[0-9a-f]{8}", warning))


def test_floor_reports_equal_the_desks_reports(db: str, mqtt: Mosquitto, tmp_path: Path) -> None:
    rng = random.Random(21)
    stores = []
    for desk, _, tz, agent in DESKS:
        recorder = CallRecorder(tmp_path / desk / "metrics.sqlite3")
        fill(recorder, agent, tz, rng, 120)
        stores.append(recorder)
    total = sum(len(s.conn.execute("SELECT 1 FROM calls WHERE completed = 1").fetchall()) for s in stores)

    async def scenario() -> None:
        async with CentralTask(mqtt, db):
            clients = [
                FloorClient(mqtt.broker(desk), site=SITE, desk=desk, team=team, recorder=recorder, keepalive=5)
                for (desk, team, _, _), recorder in zip(DESKS, stores, strict=True)
            ]
            tasks = [asyncio.create_task(client.run()) for client in clients]
            try:
                for client in clients:
                    client.wake()
                await until(
                    lambda: asyncio.to_thread(lambda: count(db) == total), 30
                )  # a thread: partitions are made meanwhile
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    run(scenario(), 60)
    # Central kept every call's analytics, nulls as nulls (migration 6).
    metered = sum(
        s.conn.execute("SELECT count(*) FROM calls WHERE analytics IS NOT NULL").fetchone()[0] for s in stores
    )
    assert metered > 100 and sql_rows(db, "SELECT count(analytics) FROM calls")[0][0] == metered
    assert 0 < sql_rows(db, "SELECT count(analytics #> '{quality,clipping_pct}') FROM calls"
                        " WHERE analytics #>> '{quality,clipping_pct}' IS NULL")[0][0] < metered  # fmt: skip
    # Partitioned by month: October's calls are in October's partition, none in the default one.
    assert sql_rows(db, "SELECT count(*) FROM calls_2026_10")[0][0] == total
    assert sql_rows(db, "SELECT count(*) FROM calls_default")[0][0] == 0
    paths = [tmp_path / desk / "metrics.sqlite3" for desk, *_ in DESKS]
    queries = [
        R.ReportQuery(),
        R.ReportQuery(by="day"),
        R.ReportQuery(by="hour"),
        R.ReportQuery(by="agent"),
        R.ReportQuery(since=date(2026, 10, 25), until=date(2026, 10, 25), by="hour"),
        R.ReportQuery(agent="sam", by="day"),
        R.ReportQuery(agent="sam"),
        R.ReportQuery(since=date(2030, 1, 1)),  # no calls
    ]
    with psycopg.connect(db) as conn:
        for query in queries:
            sources = R.open_sources(paths, query)
            try:
                desks = R.build(sources, query)
            finally:
                for source in sources:
                    source.close()
            floor = reports_pg.build(conn, reports_pg.FloorQuery(query.since, query.until, query.agent, query.by))
            assert flat(floor) == flat(desks), query
            # The analytics columns carry figures (the comparison above is not of empty columns alone).
            analytics = floor.total.flat()
            if floor.total.calls:
                assert analytics["analytics_calls"] > 0 and analytics["response_median_s_mean"] is not None, query
            else:
                assert analytics["analytics_calls"] == 0 and analytics["agent_share_mean"] is None, query
            assert floor.period() == desks.period(), query
            # The same warnings; the stores in id order (PostgreSQL has no order of files given).
            assert [_unordered(w) for w in floor.warnings] == [_unordered(w) for w in desks.warnings], query
            assert floor.total.calls == (total if query.since is None and query.agent is None else floor.total.calls)

        # The floor's own groupings: a team is its desks' stores, a site all of them.
        for team in ("blue", "red"):
            mine = [p for p, (_, t, _, _) in zip(paths, DESKS, strict=True) if t == team]
            by_day = R.build(R.open_sources(mine, R.ReportQuery(by="day")), R.ReportQuery(by="day"))
            floor = reports_pg.build(conn, reports_pg.FloorQuery(by="team,day"))
            rows = [row for row in flat(floor)[:-1] if row[0].startswith(f"{team} ")]
            assert [[row[0].removeprefix(f"{team} "), *row[1:]] for row in rows] == flat(by_day)[:-1]
            teams = {row[0]: row for row in flat(reports_pg.build(conn, reports_pg.FloorQuery(by="team")))}
            assert teams[team][1:] == flat(by_day)[-1][1:]
        everything = R.build(R.open_sources(paths, R.ReportQuery()), R.ReportQuery())
        sites = flat(reports_pg.build(conn, reports_pg.FloorQuery(by="site")))
        assert sites[0][0] == SITE and sites[0][1:] == flat(everything)[-1][1:]
        by_agent = R.build(R.open_sources(paths, R.ReportQuery(by="agent")), R.ReportQuery(by="agent"))
        months = flat(reports_pg.build(conn, reports_pg.FloorQuery(by="agent,month")))
        assert [row[0] for row in months[:-1]] == [f"{row.group} 2026-10" for row in by_agent.rows]
        assert [row[1:] for row in months] == [row[1:] for row in flat(by_agent)]

    # The command line, both ways.
    url = "postgresql://offhook@127.0.0.1:" + db.split("port=")[1].split()[0] + "/" + db.split("dbname=")[1]
    assert cli_json("--db", url, "--by", "hour") == cli_json(*map(str, paths), "--by", "hour")
    bad = subprocess.run(
        [*OFFHOOK, "report", "--db", url, "--by", "week"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert bad.returncode == 2 and "--by over PostgreSQL" in bad.stderr
