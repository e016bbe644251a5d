"""The wallboard and floor reports under load.

1. Live push: 1,000 load desks (the floor benchmark's LoadDesk: the daemon's FloorClient and
   MetricsSink, one call per 3 minutes each, in a process of their own) publish through a real
   Mosquitto to `offhook central run --https` (its own process). Beside one real headless
   Chromium on the wallboard, a WebSocket client that speaks the page's protocol measures each
   state change from the desk's publish (the state's ``ts``, the desk's wall clock) to its
   ``tile`` message arriving: p50 and p99, goal p99 ≤ 500 ms.
2. Floor reports over 10 million calls (2,000 agents, 40 teams, 3 sites, 90 days), filled by SQL
   into the partitioned ``calls`` and rolled up at once (pgstore.rebuild_rollups): a team-day
   report (one team, one day) and a month-by-agent report (one site, one month), each from the
   rollups beside the same report from the calls and a bare ``SELECT count(*)`` over the same
   calls; goal ≤ 1 s each. Also one day of every team, one month of every site, and the whole
   90 days by team and day. `python -m tests.bench.bench_wallboard --reports` runs this part alone.

FLOOR_WALLBOARD_DESKS, FLOOR_WALLBOARD_S, FLOOR_REPORT_CALLS scale it down for a quick look.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from offhook.floor import auth, pgstore, reports_pg
from offhook.floor.client import Broker
from tests.bench.figures import Figure, percentile
from tests.floor.rig import Mosquitto, Postgres, postgres_server
from tests.floor.webrig import CentralWebProcess, make_token

AREA = "wallboard"
DESKS = int(os.environ.get("FLOOR_WALLBOARD_DESKS", "1000"))
STEADY_S = float(os.environ.get("FLOOR_WALLBOARD_S", "120"))
WARMUP_S = 45.0  # a thousand TLS connections and first states: not measured
CALLS = int(os.environ.get("FLOOR_REPORT_CALLS", "10000000"))
AGENTS, TEAMS, SITES, DAYS = 2000, 40, 3, 90
FIRST_DAY = date(2026, 7, 1)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOAD = [sys.executable, "-m", "tests.bench.bench_wallboard", "--load"]


# ---------------------------------------------------------------- 1. live push


class _Brokers:
    """What LoadDesk asks of the rig's Mosquitto, from its directory and port (another process)."""

    def __init__(self, directory: Path, port: int) -> None:
        self.dir, self.port = directory, port

    def broker(self, account: str) -> Broker:
        password = (self.dir / "secrets" / f"{account}.password").read_text().strip()
        return Broker("localhost", self.port, True, account, password, ca_file=str(self.dir / "ca.pem"))


async def _load(directory: Path, port: int, desks: int, seconds: float, workdir: Path) -> None:
    """The load generator's process: ``desks`` LoadDesks taking calls for ``seconds``."""
    from tests.bench.bench_floor import LoadDesk

    brokers: Any = _Brokers(directory, port)
    loads = [LoadDesk(brokers, f"load-{n:04d}", workdir) for n in range(desks)]
    for load in loads:
        load.task = asyncio.create_task(load.client.run())
    until = time.monotonic() + seconds
    work = [asyncio.create_task(load.work(until, random.Random(load.name))) for load in loads]
    await asyncio.wait(work, timeout=seconds)  # a desk waits for its next call past the end: cut it there
    for task in work:
        task.cancel()
    for load in loads:
        if load.task is not None:
            load.task.cancel()
    await asyncio.wait([load.task for load in loads if load.task], timeout=5)
    sys.stdout.flush()
    os._exit(0)  # a client still reconnecting must not hold the measurement up


async def _live(workdir: Path, pg: Postgres) -> dict[str, float]:
    names = [f"load-{n:04d}" for n in range(DESKS)]
    mqtt = Mosquitto(names)
    mqtt.start()
    central = CentralWebProcess(mqtt, pg.new_database())
    latencies: list[float] = []
    reference: list[float] = []  # the same changes seen by a plain MQTT subscriber (no central)
    load: subprocess.Popen[bytes] | None = None
    try:
        await central.start()
        print(f"  wallboard: central up; {DESKS} load desks for {STEADY_S:g} s", flush=True)
        dsn = central.command[central.command.index("--db") + 1]
        token = make_token(dsn, auth.SUPERVISOR, "bench")
        context = ssl.create_default_context(cafile=str(mqtt.dir / "ca.pem"))
        async with contextlib.AsyncExitStack() as stack:
            from playwright.async_api import async_playwright

            pw = await stack.enter_async_context(async_playwright())
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
            stack.push_async_callback(browser.close)
            page = await (await browser.new_context(ignore_https_errors=True)).new_page()
            await page.goto(f"{central.url}/login")
            await page.fill("#token", token)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{central.url}/wallboard")
            session = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
            )
            ws = await session.ws_connect(
                f"wss://localhost:{central.port}/ws/wallboard", headers={"Authorization": f"Bearer {token}"}
            )
            load = subprocess.Popen(
                [*LOAD, str(mqtt.dir), str(mqtt.port), str(DESKS), str(STEADY_S), str(workdir)],
                cwd=Path(__file__).resolve().parents[2],
            )
            seen: dict[str, float] = {}
            warmup = time.monotonic() + WARMUP_S  # the desks connect and publish their first states
            stack.push_async_callback(_cancelled, asyncio.create_task(_mqtt_reference(mqtt, warmup, reference)))
            while load.poll() is None:
                with contextlib.suppress(TimeoutError):
                    message = await asyncio.wait_for(ws.receive(), 1.0)
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    arrived = time.time()
                    body = json.loads(message.data)
                    if body["type"] != "tile" or body["tile"]["ts"] is None:
                        continue
                    tile = body["tile"]
                    if seen.get(tile["id"]) == tile["ts"]:
                        continue  # the same change again (an agent's name learnt), not a new one
                    seen[tile["id"]] = tile["ts"]
                    if time.monotonic() > warmup:
                        latencies.append(arrived - tile["ts"])
            await ws.close()
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        central.stop()
        mqtt.close()
    return {
        "mqtt_p50": percentile(reference, 0.5) if reference else float("nan"),
        "mqtt_p99": percentile(reference, 0.99) if reference else float("nan"),
        "p50": percentile(latencies, 0.5) if latencies else float("nan"),
        "p99": percentile(latencies, 0.99) if latencies else float("nan"),
        "changes": len(latencies),
    }


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _mqtt_reference(mqtt: Mosquitto, warmup: float, latencies: list[float]) -> None:
    """Publish → a plain MQTT subscriber (central's second account), for the same state changes."""
    async with mqtt.broker("central-2").client("bench-reference", keepalive=30) as client:
        await client.subscribe("offhook/v1/+/+/state", qos=1)
        async for message in client.messages:
            arrived = time.time()
            if message.retain or time.monotonic() < warmup:
                continue
            payload = message.payload
            latencies.append(arrived - json.loads(payload if isinstance(payload, bytes) else str(payload))["ts"])


# ---------------------------------------------------------------- 2. reports over 10 million calls

_FILL = """
INSERT INTO calls (store_id, call_id, seq, site, desk, agent, tz, direction, number, outcome, ring_wall,
    answer_wall, end_wall, wrap_wall, local_start, local_day, ring_s, talk_s, hold_s, wrap_s, holds, long_holds,
    ended_by)
SELECT 'store-' || a, 'c' || g || '@pbx', g, 'site-' || (a %% {sites}), 'desk-' || a, 'agent-' || a, 'UTC', 'inbound',
    NULL, o, ts, CASE WHEN talk IS NULL THEN NULL ELSE ts + ring END, ts + ring + coalesce(talk + hold, 0),
    ts + ring + talk + hold + wrap,
    to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"'),
    (to_timestamp(ts) AT TIME ZONE 'UTC')::date, ring, talk, hold, wrap, held, coalesce((hold > 120)::int, 0), 'agent'
FROM (
    SELECT g, a, ts, ring, holds,
        CASE WHEN r < 0.06 THEN 'missed' WHEN r < 0.09 THEN 'abandoned' WHEN r < 0.96 THEN 'answered'
             ELSE 'transferred' END AS o,
        CASE WHEN r < 0.09 THEN NULL ELSE 30 + random() * 600 END AS talk,
        CASE WHEN r < 0.09 THEN NULL WHEN holds > 0 THEN random() * 240 ELSE 0 END AS hold,
        CASE WHEN r < 0.09 THEN NULL ELSE random() * 90 END AS wrap,
        CASE WHEN r < 0.09 THEN 0 ELSE holds END AS held
    FROM (
        SELECT g, g %% {agents} AS a, random() AS r, (random() < 0.3)::int AS holds, 1 + random() * 30 AS ring,
            extract(epoch FROM %s::timestamp)
                + (g::float8 / {calls}) * {days} * 86400 + random() * 60 AS ts
        FROM generate_series(%s::bigint, %s::bigint) g
    ) s
) t
"""


def _fill(dsn: str, calls: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        asyncio.run(_migrate(dsn))
        months = sorted({pgstore.partition_of(str(FIRST_DAY + timedelta(days=d))) for d in range(DAYS + 1)})
        for name, first, after in months:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF calls FOR VALUES FROM ('{first}') TO ('{after}')"
            )
        conn.execute(
            "INSERT INTO desks (site, desk, team, online) SELECT 'site-' || a %% 3, 'desk-' || a,"
            " 'team-' || lpad((a %% %s)::text, 2, '0'), true FROM generate_series(0, %s) a",
            (TEAMS, AGENTS - 1),
        )
        sql = _FILL.format(sites=SITES, agents=AGENTS, calls=calls, days=DAYS)
        chunk = 1_000_000
        for low in range(1, calls + 1, chunk):
            conn.execute(sql, (FIRST_DAY.isoformat(), low, min(calls, low + chunk - 1)))  # type: ignore[arg-type]
        conn.execute("VACUUM ANALYZE calls")
    return time.perf_counter() - started


def _roll_up(dsn: str) -> float:
    """The rollups of the SQL-filled calls (central keeps them as it ingests; the fill bypasses it)."""
    started = time.perf_counter()
    with psycopg.connect(dsn) as conn:
        pgstore.rebuild_rollups(conn)
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE call_rollups")
    return time.perf_counter() - started


async def _migrate(dsn: str) -> None:
    conn = await pgstore.connect(dsn)
    try:
        await pgstore.migrate(conn)
    finally:
        await conn.close()


def _timed(dsn: str, query: reports_pg.FloorQuery) -> tuple[float, float, float, int]:
    """(report seconds from the rollups, the same report from the calls, a bare count(*) over the same
    calls, their number); the two reports' figures must be equal."""
    with psycopg.connect(dsn) as conn:
        reports_pg.build(conn, query)  # warm: the pages cached, as a report read twice would be
        started = time.perf_counter()
        report = reports_pg.build(conn, query)
        took = time.perf_counter() - started
        reports_pg.build(conn, query, rollups=False)
        started = time.perf_counter()
        raw = reports_pg.build(conn, query, rollups=False)
        raw_s = time.perf_counter() - started
        assert list(map(list, report.flat_rows())) == list(map(list, raw.flat_rows())), query
        where, params = reports_pg._where(query)
        started = time.perf_counter()
        rows = conn.execute(
            f"SELECT count(*) FROM calls c{reports_pg._join(query)} WHERE {' AND '.join(where)}", params
        ).fetchone()
        bare = time.perf_counter() - started
    assert rows is not None and rows[0] == report.total.calls
    return took, raw_s, bare, int(rows[0])


def _reports(pg: Postgres) -> list[Figure]:
    dsn = pg.new_database()
    print(f"  wallboard: filling {CALLS:,} calls", flush=True)
    fill_s = _fill(dsn, CALLS)
    print(f"  wallboard: filled in {fill_s:.0f} s", flush=True)
    rollup_s = _roll_up(dsn)
    print(f"  wallboard: rolled up in {rollup_s:.0f} s", flush=True)
    day = FIRST_DAY + timedelta(days=45)
    month_first = date(FIRST_DAY.year, FIRST_DAY.month + 1, 1)
    month_last = date(FIRST_DAY.year, FIRST_DAY.month + 2, 1) - timedelta(days=1)
    Q = reports_pg.FloorQuery
    shapes = [  # the two (one team, one day; one site, one month), then wider ones
        ("team-day report (one team, one day, by agent)", Q(day, day, by="agent", team="team-07")),
        (
            "month-by-agent report (one site, one month, by agent)",
            Q(month_first, month_last, by="agent", site="site-1"),
        ),
        ("one day by team (every team)", Q(day, day, by="team")),
        ("one month by agent (every site)", Q(month_first, month_last, by="agent")),
        ("90 days by team and day", Q(by="team,day")),
    ]
    figures = []
    scale = f"{CALLS:,} calls, {AGENTS:,} agents, {TEAMS} teams, {SITES} sites, {DAYS} days"
    for name, query in shapes:
        took, raw_s, bare, rows = _timed(dsn, query)
        print(f"  wallboard: {name}: {took:.3f} s; from the calls {raw_s:.3f} s; count(*) {bare:.3f} s", flush=True)
        figures.append(
            Figure(
                AREA,
                f"floor {name}, from rollups",
                took,
                "s",
                f"the same from the calls: {raw_s:.2f} s; bare count(*) of its {rows:,} calls: {bare:.3f} s ({scale})",
                "≤ 1 s",
                took <= 1.0,
            )
        )
    figures.append(Figure(AREA, f"fill {CALLS:,} calls by SQL (partitioned by month)", fill_s, "s", scale))
    figures.append(Figure(AREA, f"roll up {CALLS:,} calls at once (pgstore.rebuild_rollups)", rollup_s, "s", scale))
    return figures


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg:
        live = asyncio.run(_live(Path(tmp), pg))
        figures = [
            Figure(
                AREA,
                "state change → wallboard client p50",
                live["p50"] * 1000,
                "ms",
                f"{int(live['changes'])} changes, {DESKS} load desks, one Chromium on the board;"
                f" plain MQTT subscriber p50 {live['mqtt_p50'] * 1000:.0f} ms",
            ),
            Figure(
                AREA,
                "state change → wallboard client p99",
                live["p99"] * 1000,
                "ms",
                f"the desk's publish to the tile message; plain MQTT subscriber p99 {live['mqtt_p99'] * 1000:.0f} ms",
                "≤ 500 ms",
                live["p99"] <= 0.5,
            ),
        ]
        if CALLS:
            figures += _reports(pg)
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--reports"]:  # part 2 alone
        with postgres_server() as pg:
            for figure in _reports(pg):
                print(*figure.row(), sep="  |  ")
    elif sys.argv[1:2] == ["--load"]:
        directory, port, desks, seconds, workdir = sys.argv[2:7]
        from tests.floor.rig import _many_files

        _many_files()
        asyncio.run(_load(Path(directory), int(port), int(desks), float(seconds), Path(workdir)))
    else:
        for figure in run():
            print(*figure.row(), sep="  |  ")
