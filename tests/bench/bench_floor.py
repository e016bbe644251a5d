"""The floor under load: 1,000 desks (the daemon's own FloorClient, asyncio, one process) against a
real Mosquitto and `offhook central run` (its own process) writing a real PostgreSQL.

1. Drain: every desk starts with a backlog of completed calls; central's commit rate over the
   drain (PostgreSQL's commit times), beside a plain COPY of the same rows into the same server.
2. Steady floor: each desk takes a call every 3 minutes on average (exponential arrivals), its
   states (ringing, on call, hold, wrap-up, available) and record through the real MetricsSink;
   state change (the desk's wall clock as it publishes) → central's stored live state (the write's
   statement time), p50/p99; central's CPU and RSS.
3. The daemon idle with the floor on, beside the same daemon with it off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from offhook.floor.client import FloorClient
from offhook.metrics import store
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder
from tests.bench.figures import Figure, percentile
from tests.floor.rig import SITE, CentralProcess, Moment, Mosquitto, Postgres, postgres_server

DESKS = int(os.environ.get("FLOOR_BENCH_DESKS", "1000"))
BACKLOG = int(os.environ.get("FLOOR_BENCH_BACKLOG", "100"))  # completed calls per desk before it connects
STEADY_S = float(os.environ.get("FLOOR_BENCH_STEADY_S", "90"))
CALL_EVERY_S = 180.0
IDLE_S = 20.0
AREA = "floor"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _backlog(recorder: CallRecorder, desk: str, calls: int) -> None:
    """``calls`` completed calls written straight into the store (as a long outage would leave them)."""
    now = time.time() - 86400
    rows = []
    for n in range(calls):
        ring = now + n * 200.0
        local = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ring))
        summary = store.summary("answered", local, 4.0, 120.0, 10.0, 20.0, 1, 0)
        who = (f"{desk}-backlog-{n}@pbx", f"agent-{desk}", "UTC", "inbound", f"h1:{n:064x}", ring, local, local[:10])
        times = (0.0, 4.0, ring + 4, 134.0, ring + 134, 154.0, ring + 154)
        rows.append((*who, *times, "answered", 1, 4.0, 120.0, 10.0, 20.0, 1, 0, summary))
    with recorder._transaction() as conn:
        conn.executemany(
            "INSERT INTO calls (call_id, agent, tz, direction, number, ring_wall, local_start, local_day, ring_mono,"
            " answer_mono, answer_wall, end_mono, end_wall, wrap_mono, wrap_wall, outcome, completed, ring_s, talk_s,"
            " hold_s, wrap_s, holds, long_holds, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    recorder.floor_enable()
    recorder.floor_pending(0, 1)  # numbered now, so the drain measures the floor, not the numbering


class LoadDesk:
    def __init__(self, mqtt: Mosquitto, name: str, workdir: Path) -> None:
        self.name = name
        self.recorder = CallRecorder(workdir / name / "metrics.sqlite3")
        self.sink = MetricsSink(self.recorder, agent=f"agent-{name}", tz="UTC")
        self.client = FloorClient(mqtt.broker(name), site=SITE, desk=name, team="bench", recorder=self.recorder)
        self.task: asyncio.Task[None] | None = None
        self.calls = 0

    def state(self, agent: str, calls: list[dict[str, Any]]) -> None:
        self.client.event({"event": "state", "agent": agent, "call": "idle", "calls": calls})

    async def moment(self, moment: str, call_id: str, **data: Any) -> None:
        # Off the loop: a thousand desks' fsyncs in one loop would delay every other desk's state,
        # which a real desk (its own daemon process) never sees.
        await asyncio.to_thread(self.sink, Moment(moment, call_id, time.monotonic(), data))
        self.client.event({"event": "recorded", "moment": moment, "call": call_id})

    async def work(self, until: float, rng: random.Random) -> None:
        """Calls until ``until``: exponential arrivals, a mean of one per CALL_EVERY_S."""
        self.state("available", [])
        while True:
            await asyncio.sleep(rng.expovariate(1 / CALL_EVERY_S))
            if time.monotonic() > until:
                return
            self.calls += 1
            call = f"{self.name}-live-{self.calls}@pbx"
            await self.moment("ringing", call, direction="inbound", peer=f"+49301{rng.randrange(10**7):07d}")
            self.state("available", [{"state": "ringing"}])
            await asyncio.sleep(rng.uniform(2, 6))
            await self.moment("answered", call)
            self.state("on_call", [{"state": "active"}])
            await asyncio.sleep(rng.uniform(10, 40))
            if rng.random() < 0.3:
                await self.moment("hold_started", call)
                self.state("on_call", [{"state": "held", "held_s": 0.0}])
                await asyncio.sleep(rng.uniform(3, 10))
                await self.moment("hold_ended", call)
                self.state("on_call", [{"state": "active"}])
                await asyncio.sleep(rng.uniform(5, 20))
            await self.moment("hung_up", call)
            self.state("wrap_up", [])
            await asyncio.sleep(rng.uniform(3, 8))
            await self.moment("wrap_up_ended", call)
            self.state("available", [])


def _raise_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


async def _commit_path(dsn: str, rollups: bool = True) -> float:
    """Records/s through central's own ingest and write (schema checks, JSON, COPY, upsert, the rollups
    of the days written), no broker: the same desk batches, fed to Ingest and pgstore.write as fast as
    they commit. ``rollups=False``: the same without the rollups' upkeep (the reference)."""
    from offhook.floor import pgstore

    if not rollups:
        kept = pgstore.refresh_rollups

        async def no_rollups(cur: Any, changed: Any) -> None:
            pass

        pgstore.refresh_rollups = no_rollups  # type: ignore[assignment]
        try:
            return await _commit_path(dsn)
        finally:
            pgstore.refresh_rollups = kept  # type: ignore[assignment]
    from offhook.floor import schema as S
    from offhook.floor.central import Ingest

    payloads = []
    record = {key: None for key in S.RECORD_FIELDS} | {"agent": "a", "tz": "UTC", "direction": "inbound"}
    record |= {"outcome": "answered", "ring_wall": 1.7e9, "local_start": "2026-12-06T10:00:00+00:00"}
    record |= {"local_day": "2026-12-06", "holds": 1, "long_holds": 0, "talk_s": 120.0, "number": "h1:" + "0" * 64}
    for desk in range(DESKS):
        records = [record | {"seq": n + 1, "call_id": f"d{desk}-c{n}@pbx"} for n in range(BACKLOG)]
        for start in range(0, BACKLOG, S.MAX_BATCH):
            body = {"store": f"store-{desk}", "after": start, "records": records[start : start + S.MAX_BATCH]}
            payloads.append((S.topic(SITE, f"desk-{desk:04d}", S.RECORDS), S.encode(body)))
    conn = await pgstore.connect(dsn)
    await pgstore.migrate(conn)
    ingest = Ingest()
    started = time.perf_counter()
    for topic, payload in payloads:
        ingest.message(topic, payload)
        if len(ingest.batch.records) >= 5000:
            await pgstore.write(conn, ingest.take(), "bench")
    await pgstore.write(conn, ingest.take(), "bench")
    elapsed = time.perf_counter() - started
    await conn.close()
    return DESKS * BACKLOG / elapsed


def _copy_reference(dsn: str) -> float:
    """Rows/s of a plain COPY of the same records into an empty table of the same shape."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT * FROM calls").fetchall()
        conn.execute("CREATE TABLE copy_reference (LIKE calls INCLUDING ALL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY copy_reference FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.commit()
        return len(rows) / (time.perf_counter() - started)


async def _floor(workdir: Path, pg: Postgres) -> dict[str, float]:
    _raise_file_limit()
    names = [f"desk-{n:04d}" for n in range(DESKS)]
    mqtt = Mosquitto([*names, "desk-idle"], log_refusals=False)
    mqtt.start()
    dsn = pg.new_database()
    central = CentralProcess(mqtt, dsn)
    out: dict[str, float] = {}
    try:
        # The daemon idle first: the scripted unit's select() needs descriptors below 1,024.
        out["idle_on_cpu"], out["idle_on_rss"] = await asyncio.to_thread(_idle, workdir, mqtt, True)
        out["idle_off_cpu"], out["idle_off_rss"] = await asyncio.to_thread(_idle, workdir, mqtt, False)
        central.start()
        desks = [LoadDesk(mqtt, name, workdir) for name in names]
        for desk in desks:
            _backlog(desk.recorder, desk.name, BACKLOG)
        await asyncio.sleep(3)  # central up and subscribed
        assert central.process is not None
        pid = central.process.pid
        cpu0, t0 = _cpu_s(pid), time.monotonic()
        for desk in desks:
            desk.task = desk.client.task = asyncio.create_task(desk.client.run())
        total = DESKS * BACKLOG
        with psycopg.connect(dsn, autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM calls").fetchone()[0] < total:  # type: ignore[index]
                await asyncio.sleep(0.2)
                if time.monotonic() - t0 > 600:
                    raise RuntimeError("the backlog did not drain in 10 minutes")
            first, last = conn.execute("SELECT min(committed_at), max(committed_at) FROM calls").fetchone()  # type: ignore[misc]
        out["drain_s"] = time.monotonic() - t0
        out["drain_cpu"] = 100 * (_cpu_s(pid) - cpu0) / out["drain_s"]
        out["commit_rate"] = total / max((last - first).total_seconds(), 1e-3)
        out["copy_rate"] = await asyncio.to_thread(_copy_reference, dsn)
        out["commit_path"] = await _commit_path(pg.new_database())
        out["commit_path_bare"] = await _commit_path(pg.new_database(), rollups=False)
        out["records"] = total

        # The steady floor: state latencies sampled from live_state as it changes.
        rng = random.Random(20)
        until = time.monotonic() + STEADY_S
        seen: dict[str, tuple[int, int]] = {}
        latencies: list[float] = []
        cpu1, t1 = _cpu_s(pid), time.monotonic()
        workers = [asyncio.create_task(desk.work(until, rng)) for desk in desks]
        with psycopg.connect(dsn, autocommit=True) as conn:
            recent = (
                "SELECT desk, run, seq, ts, extract(epoch FROM updated_at) FROM live_state"
                " WHERE updated_at > now() - interval '5 seconds'"
            )
            while time.monotonic() < until:
                rows = await asyncio.to_thread(lambda: conn.execute(recent).fetchall())
                for desk_name, run, seq, ts, stored in rows:
                    if seen.get(desk_name, (0, 0)) < (run, seq):
                        if desk_name in seen:  # not the first state (published before the measurement)
                            latencies.append(float(stored) - ts)
                        seen[desk_name] = (run, seq)
                await asyncio.sleep(0.02)
        out["steady_cpu"] = 100 * (_cpu_s(pid) - cpu1) / (time.monotonic() - t1)
        out["central_rss"] = _rss_mb(pid)
        out["states"] = len(latencies)
        out["state_p50"] = percentile(latencies, 0.5) if latencies else float("nan")
        out["state_p99"] = percentile(latencies, 0.99) if latencies else float("nan")
        out["live_calls"] = sum(desk.calls for desk in desks)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        for desk in desks:  # no waiting on a thousand disconnects: the process ends soon anyway
            desk.client.closed = True
            if desk.task is not None:
                desk.task.cancel()
        await asyncio.sleep(2)
        out["generator_rss"] = _rss_mb(os.getpid())
    finally:
        central.stop()
        mqtt.close()
    return out


def _idle(workdir: Path, mqtt: Mosquitto, floor: bool) -> tuple[float, float]:
    """CPU % and RSS of `offhook daemon` idling with a (scripted) unit and the web softphone."""
    from tests.host.fake_unit import PtyUnit

    unit = PtyUnit()
    home = workdir / f"idle-{floor}"
    home.mkdir()
    cfg = home / "config.toml"
    text = f'[unit]\nport = "{unit.path}"\n[softphone]\nkind = "api"\n'
    if floor:
        section = mqtt.floor_config("desk-idle") | {"keepalive_s": 30}
        text += "[floor]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in section.items())
    cfg.write_text(text)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(home), "XDG_STATE_HOME": str(home), "OFFHOOK_DATA_DIR": str(home)}
    offhook = Path(sys.executable).with_name("offhook")
    log = (home / "daemon.log").open("w")
    daemon = subprocess.Popen([offhook, "daemon", "--config", cfg, "--api-port", "0", "-v"], env=env, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not unit.states() and time.monotonic() < deadline:
            unit.pump(0.1)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            unit.pump(0.2)
        if daemon.poll() is not None or not unit.states():
            raise RuntimeError(f"the daemon did not come up: {(home / 'daemon.log').read_text()[-500:]}")
        cpu0, t0 = _cpu_s(daemon.pid), time.monotonic()
        while time.monotonic() < t0 + IDLE_S:
            unit.pump(0.5)
        cpu = 100 * (_cpu_s(daemon.pid) - cpu0) / (time.monotonic() - t0)
        if floor and "floor: connected" not in (home / "daemon.log").read_text():
            raise RuntimeError(f"the daemon's floor client did not connect: {(home / 'daemon.log').read_text()[-500:]}")
        return cpu, _rss_mb(daemon.pid)
    finally:
        daemon.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.wait(5)
        unit.unplug()


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg:
        result = asyncio.run(_floor(Path(tmp), pg))
    ms = 1000.0
    desks = f"{DESKS} desks"
    return [
        Figure(
            AREA,
            f"records/s central commits ({int(result['records']):,} backlog)",
            result["commit_rate"],
            "/s",
            f"plain COPY of the same rows: {result['copy_rate']:,.0f}/s",
            "≥ 5,000/s",
            result["commit_rate"] >= 5000,
        ),
        Figure(
            AREA,
            "records/s central's ingest + commit alone",
            result["commit_path"],
            "/s",
            f"same batches, no broker; without the rollups' upkeep {result['commit_path_bare']:,.0f}/s;"
            f" COPY {result['copy_rate']:,.0f}/s",
            "≥ 5,000/s",
            result["commit_path"] >= 5000,
        ),
        Figure(AREA, "backlog drain, connect to last commit", result["drain_s"], "s", desks),
        Figure(
            AREA,
            "state change → central's live state p50",
            result["state_p50"] * ms,
            "ms",
            f"{int(result['states'])} changes, {desks}, a call per 3 min each",
        ),
        Figure(
            AREA,
            "state change → central's live state p99",
            result["state_p99"] * ms,
            "ms",
            f"{int(result['live_calls'])} calls in {STEADY_S:g} s",
            "p99 ≤ 250 ms",
            result["state_p99"] <= 0.250,
        ),
        Figure(AREA, "central CPU, draining", result["drain_cpu"], "%", "one core = 100 %"),
        Figure(AREA, "central CPU, steady floor", result["steady_cpu"], "%", desks),
        Figure(AREA, "central RSS", result["central_rss"], "MB", desks),
        Figure(AREA, "load generator RSS", result["generator_rss"], "MB", f"{desks} in one process"),
        Figure(
            AREA,
            "daemon idle CPU, floor on",
            result["idle_on_cpu"],
            "%",
            f"floor off: {result['idle_off_cpu']:.2f} %",
        ),
        Figure(
            AREA,
            "daemon idle RSS, floor on",
            result["idle_on_rss"],
            "MB",
            f"floor off: {result['idle_off_rss']:.1f} MB",
        ),
    ]


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
