"""Reports from call_rollups (migration 7) equal the reports from the calls themselves, on real
PostgreSQL, whatever order the records come in: random calls over stores, desks, sites and days
across a month's end, written by central's own pgstore.write in batches with redeliveries, newer
versions of a call (missed, then answered after all), late records for days already written, a
batch cut short before its commit (central stopped), and a desk moving to another team."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offhook.floor import pgstore, reports_pg
from offhook.metrics import report as R
from offhook.metrics.store import HANDLED_OUTCOMES, OUTCOMES
from tests.floor.rig import REPO_ROOT
from tests.floor.webrig import OFFHOOK

STORES = [  # store, site, desk: desk-01 has had two stores (a reinstall), both still report
    ("store-a", "hq", "desk-01"),
    ("store-b", "hq", "desk-02"),
    ("store-c", "east", "desk-03"),
    ("store-d", "hq", "desk-01"),
]
AGENTS = ["ann", "sam", "kim"]
FIRST = date(2026, 10, 29)  # six days over October's end: two partitions
QUERIES = [
    reports_pg.FloorQuery(),
    reports_pg.FloorQuery(by="day"),
    reports_pg.FloorQuery(by="agent"),
    reports_pg.FloorQuery(by="team"),
    reports_pg.FloorQuery(by="site"),
    reports_pg.FloorQuery(by="month"),
    reports_pg.FloorQuery(by="agent,day"),
    reports_pg.FloorQuery(by="team,day"),
    reports_pg.FloorQuery(by="site,month"),
    reports_pg.FloorQuery(agent="sam", by="day"),
    reports_pg.FloorQuery(agent="kim"),
    reports_pg.FloorQuery(FIRST + timedelta(days=1), FIRST + timedelta(days=3), by="agent"),
    reports_pg.FloorQuery(site="hq", by="agent,month"),
    reports_pg.FloorQuery(FIRST, FIRST, team="blue", by="agent"),
    reports_pg.FloorQuery(team="nobody"),
    reports_pg.FloorQuery(since=date(2030, 1, 1), by="agent"),
]


def test_the_rollups_columns_are_the_reports() -> None:
    """The rollup's fixed columns follow the report's lists: a change there needs a migration."""
    assert pgstore.ROLLUP_OUTCOMES == OUTCOMES
    assert pgstore.ROLLUP_HANDLED == HANDLED_OUTCOMES
    assert pgstore.ROLLUP_ANALYTICS == R.ANALYTICS_MEANS


def _record(rng: random.Random, seq: int, call: str, agent: str, day: date, outcome: str) -> dict[str, Any]:
    handled = outcome in HANDLED_OUTCOMES
    hour = rng.randrange(24)
    ring = rng.choice([None, round(rng.uniform(0.5, 40), 4), 2.0005, 0.0])  # 2.0005: a half-ms tie

    def timing(low: float, high: float) -> float | None:
        if not handled:
            return None
        return rng.choice([None, 0, round(rng.uniform(low, high), 3), rng.uniform(low, high)])

    talk = timing(5, 900)
    if handled and rng.random() < 0.03:
        talk = 3.1e6  # past an int4 of milliseconds: kept as a float8
    analytics = None
    if handled and rng.random() < 0.6:
        analytics = {"agent_share": rng.choice([None, rng.random()]), "overtalk_count": rng.randrange(5)}
        analytics["quality"] = {"clipping_pct": rng.choice([None, rng.uniform(0, 3)])}
    holds = rng.choice([0, 0, 1, 2]) if handled else 0
    return {
        "seq": seq,
        "call_id": call,
        "agent": agent,
        "tz": "UTC",
        "direction": "inbound",
        "number": None,
        "outcome": outcome,
        "ring_wall": 1.79e9,
        "answer_wall": None,
        "end_wall": None,
        "wrap_wall": None,
        "local_start": f"{day.isoformat()}T{hour:02d}:10:00+00:00",
        "local_day": day.isoformat(),
        "ring_s": ring,
        "talk_s": talk,
        "hold_s": timing(0, 400),
        "wrap_s": timing(0, 120),
        "holds": holds,
        "long_holds": rng.randrange(holds + 1),
        "ended_by": None,
        "analytics": analytics,
    }


class Desks:
    """What a few desks send: new calls, redeliveries, newer versions of a call, late days."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seq = {store: 0 for store, _, _ in STORES}
        self.sent: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = {}
        self.calls = 0

    def batch(self) -> pgstore.Batch:
        rng = self.rng
        batch = pgstore.Batch()
        for store, site, desk in rng.sample(STORES, rng.randrange(1, len(STORES) + 1)):
            for _ in range(rng.randrange(1, 12)):
                kind = rng.choices(["new", "again", "newer"], [6, 2, 2])[0]
                mine = [key for key in self.sent if key[0] == store]
                if kind == "again" and mine:  # a redelivery: the same version again
                    key = rng.choice(mine)
                    batch.records[key] = self.sent[key]
                    continue
                self.seq[store] += 1
                seq = self.seq[store]
                if kind == "newer" and mine:  # a newer version: answered after all, or its times corrected
                    key = rng.choice(mine)
                    old = self.sent[key][2]
                    day = date.fromisoformat(old["local_day"])
                    outcome = rng.choice(["answered", "transferred", old["outcome"]])
                    record = _record(rng, seq, key[1], old["agent"], day, outcome)
                else:  # a new call, often for a day already written (a late record)
                    self.calls += 1
                    key = (store, f"call-{self.calls}@pbx")
                    day = FIRST + timedelta(days=rng.randrange(6))
                    outcome = rng.choices(OUTCOMES, [60, 12, 8, 12, 8])[0]
                    record = _record(rng, seq, key[1], rng.choice(AGENTS), day, outcome)
                self.sent[key] = (site, desk, record)
                batch.records[key] = (site, desk, record)
            batch.batches.append((site, desk, store, self.seq[store]))
        return batch


async def _write(dsn: str, batches: list[pgstore.Batch], cut: int | None) -> None:
    conn = await pgstore.connect(dsn)
    try:
        await pgstore.migrate(conn)
        for n, batch in enumerate(batches):
            if n == cut:  # central stops between the calls' upsert and the commit: nothing stays
                real = pgstore.refresh_rollups

                async def stopped(cur: Any, changed: Any, real: Any = real) -> None:
                    await real(cur, changed)
                    raise ConnectionError("central stopped")

                pgstore.refresh_rollups = stopped  # type: ignore[assignment]
                try:
                    with pytest.raises(ConnectionError):
                        await pgstore.write(conn, batch, "test")
                finally:
                    pgstore.refresh_rollups = real  # type: ignore[assignment]
            await pgstore.write(conn, batch, "test")
    finally:
        await conn.close()


def _flat(report: R.Report) -> list[list[Any]]:
    return [list(row) for row in report.flat_rows()]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_reports_from_rollups_equal_reports_from_calls(db: str, seed: int) -> None:
    rng = random.Random(seed)
    desks = Desks(rng)
    with psycopg.connect(db, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('calls')").fetchone() != (None,):
            conn.execute("TRUNCATE calls, call_rollups, outbox_cursors, desks")
        for round_ in range(3):
            teams = [("hq", "desk-01", rng.choice(["blue", "red"])), ("hq", "desk-02", "blue")]
            batches = [desks.batch() for _ in range(rng.randrange(1, 6))]
            asyncio.run(_write(db, batches, rng.randrange(len(batches)) if round_ == 1 else None))
            conn.execute(
                "INSERT INTO desks (site, desk, team) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[])"
                " ON CONFLICT (site, desk) DO UPDATE SET team = EXCLUDED.team",
                [list(column) for column in zip(*teams, strict=True)],
            )
            # The rollups are exactly what the calls sum to now, row for row (the analytics sums are
            # float sums, whose last bits follow the order PostgreSQL read the calls in) ...
            kept = conn.execute("SELECT * FROM call_rollups ORDER BY 1, 2, 3, 4, 5").fetchall()
            fresh = conn.execute(
                f"SELECT * FROM ({pgstore.ROLLUP_SELECT.replace('{where}', 'true')}) r ORDER BY 1, 2, 3, 4, 5"
            )
            again = fresh.fetchall()
            assert [row[:-1] for row in kept] == [row[:-1] for row in again]
            assert [row[-1] for row in kept] == [pytest.approx(row[-1], rel=1e-12) for row in again]
            calls = conn.execute("SELECT count(*) FROM calls").fetchone()
            assert calls == (len(desks.sent),)  # each call once, whatever was redelivered or cut short
            # ... and every report shape from them equals the same report from the calls.
            for query in QUERIES:
                rolled = reports_pg.build(conn, query)
                raw = reports_pg.build(conn, query, rollups=False)
                assert _flat(rolled) == _flat(raw), query
                assert rolled.period() == raw.period(), query
                assert rolled.warnings == raw.warnings and rolled.agents == raw.agents, query
        assert reports_pg.build(conn, reports_pg.FloorQuery()).total.calls == len(desks.sent)


def test_migration_7_rolls_up_the_calls_already_there(db: str) -> None:
    """A database at schema 6 with calls gets their rollups when central moves it to 7."""
    rng = random.Random(7)
    desks = Desks(rng)
    asyncio.run(_write(db, [desks.batch() for _ in range(4)], None))
    with psycopg.connect(db, autocommit=True) as conn:
        before = conn.execute("SELECT * FROM call_rollups ORDER BY 1, 2, 3, 4, 5").fetchall()
        assert before
        conn.execute("DROP TABLE call_rollups")
        conn.execute("DELETE FROM schema_version WHERE version = 7")
    asyncio.run(_write(db, [], None))
    with psycopg.connect(db, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM call_rollups ORDER BY 1, 2, 3, 4, 5").fetchall() == before


def test_the_command_line_keeps_to_a_site_or_a_team(db: str) -> None:
    """`offhook report --db postgresql://… --team/--site` (a read-only session, from the rollups)
    prints the report from the calls; without the floor's database the options are refused."""
    desks = Desks(random.Random(3))
    asyncio.run(_write(db, [desks.batch() for _ in range(4)], None))
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("INSERT INTO desks (site, desk, team) VALUES ('hq', 'desk-01', 'blue'), ('hq', 'desk-02', 'red')")
    url = "postgresql://offhook@127.0.0.1:" + db.split("port=")[1].split()[0] + "/" + db.split("dbname=")[1]
    for option, value in (("--team", "blue"), ("--site", "east")):
        done = subprocess.run(
            [*OFFHOOK, "report", "--db", url, option, value, "--by", "agent,day", "--format", "json"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
        )
        assert done.returncode == 0, done.stderr
        query = reports_pg.FloorQuery(by="agent,day", **{option[2:]: value})
        with psycopg.connect(db) as conn:
            raw = reports_pg.build(conn, query, rollups=False)
        assert json.loads(done.stdout) == json.loads(json.dumps(raw.as_json())), option
        assert raw.total.calls > 0
    refused = subprocess.run([*OFFHOOK, "report", "--team", "blue"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert refused.returncode == 2 and "--team need the floor's database" in refused.stderr


def test_two_centrals_writing_the_same_days_keep_the_rollups_whole(db: str) -> None:
    """Two instances share the records (MQTT shared subscription), so both may write one store's
    calls at once. pgstore.write locks each store's outbox row first, so its rollups are rebuilt by
    one transaction at a time; without that lock both would insert the first rollup rows of a day
    and one would fail on the key. Anything a crossing write raises must be what central retries
    (central.RETRIED); then the rollups are exactly what the calls sum to."""
    from offhook.floor.central import RETRIED

    rng = random.Random(7)
    desks = Desks(rng)
    retried: list[str] = []

    async def instance(batches: list[pgstore.Batch]) -> None:
        conn = await pgstore.connect(db)
        try:
            for batch in batches:
                while True:
                    try:
                        await pgstore.write(conn, batch, "test")
                        break
                    except RETRIED as exc:
                        retried.append(type(exc).__name__)
        finally:
            await conn.close()

    async def both() -> None:
        conn = await pgstore.connect(db)
        await pgstore.migrate(conn)
        await conn.close()
        await asyncio.gather(instance([desks.batch() for _ in range(3)]), instance([desks.batch() for _ in range(3)]))

    with psycopg.connect(db, autocommit=True) as conn:
        for _ in range(15):  # each round starts with no rollup rows: both may insert the first ones
            if conn.execute("SELECT to_regclass('calls')").fetchone() != (None,):
                conn.execute("TRUNCATE calls, call_rollups, outbox_cursors, desks")
            desks.sent.clear()
            asyncio.run(both())
        kept = conn.execute("SELECT * FROM call_rollups ORDER BY 1, 2, 3, 4, 5").fetchall()
        again = conn.execute(
            f"SELECT * FROM ({pgstore.ROLLUP_SELECT.replace('{where}', 'true')}) r ORDER BY 1, 2, 3, 4, 5"
        ).fetchall()
        assert [row[:-1] for row in kept] == [row[:-1] for row in again]
        assert conn.execute("SELECT count(*) FROM calls").fetchone() == (len(desks.sent),)
    print(f"\nwrites retried: {len(retried)} ({', '.join(sorted(set(retried))) or 'none'})")
