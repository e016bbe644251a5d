"""Staged firmware rollouts (issue 22): `offhook central` (its own process, with HTTPS for the
bundles) on a real Mosquitto and PostgreSQL, running RolloutService.

1. Orchestration at 1,000 desks: a load generator runs, for each desk, the daemon's own rollout
   client (FloorClient, DeskUpdates, UpdateRelay: the update message, the bundle over central's
   HTTPS, fetched ahead during the soak before a wave, the relay's checks and phases) with a
   simulated flash of FLASH_S instead of a unit (the relay's flasher.Update replaced by one that
   reports as it does and takes FLASH_S). A canary of one, then WAVES waves, soaks of SOAK_S.
   Wall time from the rollout's creation until the last unit is confirmed, against the ideal
   (the soaks between stages plus one flash per stage) and the same rollout to one desk per stage
   in the same run. Each stage's delays as the broker saw
   them (a watcher: when central sent the updates, when desks' confirmations passed), central's
   CPU over the rollout beside central idle with the same desks connected, and its peaks.
2. Real simulated units: a rollout to UNITS real daemons (in this process) each on a simulated
   unit (the real firmware on the MicroPython VM), one stage; wall time until the last unit is
   confirmed, against the same with one unit. The CPU of the VMs and of this process over it, and
   of one idle simulated unit, say how much of that is the simulator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
from cryptography.hazmat.primitives import serialization

from offhook import bundle as B
from offhook.daemon import updates
from offhook.fleet.flasher import CHUNK, Phase
from offhook.floor import rollouts as R
from offhook.floor.client import FloorClient, inventory_of
from offhook.floor.desk_updates import DeskUpdates
from offhook.metrics.store import CallRecorder
from offhook.unitlink import UnitInfo
from tests.bench.bench_floor import _cpu_s, _raise_file_limit
from tests.bench.figures import Figure, percentile
from tests.fleet import keyring, simfleet
from tests.floor.rig import SITE, Mosquitto, Postgres, postgres_server, query, unit_daemon, until
from tests.floor.webrig import CentralWebProcess, client_ssl

DESKS = int(os.environ.get("ROLLOUT_BENCH_DESKS", "1000"))
WAVES = 3
FLASH_S = 3.0
SOAK_S = 10.0
IDLE_S = 10.0
UNITS = int(os.environ.get("ROLLOUT_BENCH_UNITS", "10"))
OLD = "0.1.0"
AREA = "rollout"


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f} (5 min {five:.1f}) on {os.cpu_count()} cores"


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------- 1. orchestration at 1,000 desks


class SimulatedFlash:
    """flasher.Update's shape without a unit: FLASH_S from BEGIN to CONFIRMED, with the progress
    the real one reports (every 16 chunks while sending, then verifying, rebooting, confirming,
    ok); the unit comes back with the new version halfway through the reboot."""

    SPLIT = (("sending", 0.5), ("verifying", 0.1), ("rebooting", 0.3), ("confirming", 0.1))

    def __init__(self, unit: Any, bundle: bytes, manifest: dict, result: Any, progress: Any) -> None:
        self.desk: FlashDesk = unit.desk
        self.bundle = bundle
        self.want = str(manifest["version"])
        self.progress = progress
        self.phase = Phase.BEGIN

    def on_message(self, message: object) -> None:
        pass

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start, total, at = loop.time(), len(self.bundle), 0.0

        async def reach(share: float) -> None:
            await asyncio.sleep(max(0.0, start + share * FLASH_S - loop.time()))

        self.phase = Phase.SENDING
        self.progress(0, "sending")
        marks = [*range(CHUNK * 16, total, CHUNK * 16), total]
        for n, offset in enumerate(marks, 1):
            await reach(self.SPLIT[0][1] * n / len(marks))
            self.progress(offset, "sending")
        at = self.SPLIT[0][1]
        for (text, share), phase in zip(self.SPLIT[1:], (Phase.COMMIT, Phase.REBOOTING, Phase.CONFIRMING), strict=True):
            self.phase = phase
            self.progress(total, text)
            if phase is Phase.REBOOTING:
                await reach(at + share / 2)
                self.desk.came_back(self.want)
            at += share
            await reach(at)
        self.phase = Phase.CONFIRMED
        self.progress(total, "ok")


@dataclasses.dataclass
class _Session:
    """What the relay needs of the daemon's UnitLink here: the unit's latest HELLO (and the desk)."""

    info: UnitInfo
    desk: FlashDesk


class FlashDesk:
    """One desk of the load generator: the daemon's rollout client on a unit that flashes in FLASH_S."""

    def __init__(self, mqtt: Mosquitto, name: str, workdir: Path, base_url: str, ssl: Any, key: int) -> None:
        self.name = name
        self.recorder = CallRecorder(workdir / name / "metrics.sqlite3")
        self.client = FloorClient(mqtt.broker(name), site=SITE, desk=name, team="bench", recorder=self.recorder)
        self.unit: UnitInfo | None = UnitInfo(
            path=f"sim:{name}", serial=f"{abs(hash(name)):016x}"[:16], board="sim", fw=OLD, slot="a", health="confirmed"
        )
        self.unit_transport = "serial"
        self.session = _Session(self.unit, self)
        self.relay = updates.UpdateRelay(self, lambda: True, self.report, key)
        self.updates = DeskUpdates(
            self.relay, base_url, workdir / name / "bundles", self.client.update_status, "UTC", ssl
        )
        self.client.on_update = self.updates.on_update
        self.phases: list[tuple[str, float]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def report(self, message: dict[str, Any]) -> None:
        self.phases.append((message["phase"], time.monotonic()))
        self.updates.on_event(message)

    def came_back(self, fw: str) -> None:
        """The unit's HELLO after its reset: the daemon's unit event, the floor's inventory."""
        assert self.unit is not None
        self.unit = dataclasses.replace(self.unit, fw=fw)
        self.session.info = self.unit
        self.client.event({"event": "unit", "connected": True}, inventory_of(self))

    def at(self, phase: str) -> float | None:
        return next((t for p, t in self.phases if p == phase), None)

    def start(self) -> None:
        self.client.event({"event": "unit", "connected": True}, inventory_of(self))
        self.client.event({"event": "state", "agent": "available", "call": "idle", "calls": []})
        self.client.task = asyncio.create_task(self.client.run())
        self.tasks = [self.client.task, asyncio.create_task(self.relay.run())]


@contextlib.contextmanager
def _simulated_flash() -> Iterator[None]:
    real = updates.Update
    updates.Update = SimulatedFlash
    try:
        yield
    finally:
        updates.Update = real


class CpuSampler:
    """Central's and this process's CPU every ``every`` s, in a thread: the peaks of a rollout."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        import threading

        self.samples: list[tuple[float, float, float]] = []  # (monotonic, central CPU-s, own CPU-s)
        self.stop = False
        self.thread = threading.Thread(target=self._run, args=(pid, every), daemon=True)
        self.thread.start()

    def _run(self, pid: int, every: float) -> None:
        while not self.stop:
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), _cpu_s(pid), _own_cpu()))
            time.sleep(every)

    def peak(self, start: float, end: float, window: float = 1.0) -> tuple[float, float]:
        """The highest CPU % of central and of this process over any ``window`` s in [start, end]."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        best = (0.0, 0.0)
        for i, (t, c, o) in enumerate(inside):
            later = next((s for s in inside[i:] if s[0] - t >= window), None)
            if later is not None:
                dt = later[0] - t
                best = (max(best[0], 100 * (later[1] - c) / dt), max(best[1], 100 * (later[2] - o) / dt))
        return best


class Watcher:
    """Central's update messages and the desks' confirmations as the broker passes them, seen from
    a thread of its own (its own event loop: the load generator's may lag behind)."""

    def __init__(self, mqtt: Mosquitto) -> None:
        import threading

        self.mqtt = mqtt
        self.updates: dict[str, float] = {}  # desk → when its update message passed the broker
        self.confirmed: dict[str, float] = {}
        self.ready = threading.Event()
        self.stop = False
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        with contextlib.suppress(aiomqtt.MqttError):  # the broker stops after the run
            await self._watch()

    async def _watch(self) -> None:
        async with self.mqtt.broker("central-2").client("bench-watcher") as client:
            await client.subscribe(f"offhook/v1/{SITE}/+/update", qos=1)
            await client.subscribe(f"offhook/v1/{SITE}/+/update_status", qos=1)
            self.ready.set()
            async for message in client.messages:
                now, desk = time.monotonic(), str(message.topic).split("/")[3]
                if str(message.topic).endswith("/update"):
                    if isinstance(message.payload, bytes) and not json.loads(message.payload).get("prefetch"):
                        self.updates.setdefault(desk, now)  # the update itself, not the fetch ahead
                elif isinstance(message.payload, bytes) and json.loads(message.payload)["phase"] == "confirmed":
                    self.confirmed.setdefault(desk, now)
                if self.stop:
                    return


async def _lag_probe(samples: list[float], every: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every
        await asyncio.sleep(every)
        samples.append(loop.time() - due)


def _floor(pg: Postgres, names: list[str]) -> tuple[Mosquitto, str, CentralWebProcess]:
    """A broker with an account per desk (started), a fresh database and central (not started)."""
    mqtt = Mosquitto(names, log_refusals=False)
    mqtt.start()
    dsn = pg.new_database()
    return mqtt, dsn, CentralWebProcess(mqtt, dsn)


async def _orchestration(workdir: Path, pg: Postgres, count: int) -> dict[str, Any]:
    _raise_file_limit()
    names = [f"desk-{n:04d}" for n in range(count)]
    mqtt, dsn, central = _floor(pg, names)
    data = simfleet.sim_bundle()
    sha = B.sha256_hex(data)
    key = B.key_modulus(keyring.n_hex(0))
    out: dict[str, Any] = {"bundle_kib": len(data) / 1024}
    desks: list[FlashDesk] = []
    lag: list[float] = []
    probe = asyncio.create_task(_lag_probe(lag))
    try:
        await central.start()
        assert central.process is not None
        pid = central.process.pid
        ssl = client_ssl(mqtt)
        desks = [FlashDesk(mqtt, name, workdir, central.url, ssl, key) for name in names]
        for desk in desks:
            desk.start()
        try:
            inventory = "SELECT count(*) FROM inventory WHERE connected AND board = 'sim' AND firmware = %s"
            await until(lambda: (query(dsn, inventory, OLD) or [(0,)])[0][0] == count, 120, every=0.5)
        except TimeoutError:
            pass  # the rollout targets the desks central knows; the figure says how many
        watcher = Watcher(mqtt)
        await asyncio.to_thread(watcher.ready.wait, 30)
        await asyncio.sleep(2)
        cpu0, own0, t0 = _cpu_s(pid), _own_cpu(), time.monotonic()
        await asyncio.sleep(IDLE_S)
        out["idle_cpu"] = 100 * (_cpu_s(pid) - cpu0) / (time.monotonic() - t0)
        out["own_idle_cpu"] = 100 * (_own_cpu() - own0) / (time.monotonic() - t0)

        # The smallest whole percentage whose WAVES waves cover the rest (34 % of 1,000; 25 % of 4).
        wave = -(-100 * (count - 1) // (WAVES * count))
        spec = R.Spec("bench", simfleet.NEW, "sim", sha, canary=1, wave_percent=wave, soak_s=SOAK_S)
        lag.clear()
        sampler = CpuSampler(pid)
        cpu0, own0 = _cpu_s(pid), _own_cpu()
        with psycopg.connect(dsn, autocommit=True) as conn:
            R.create(conn, spec, data)
        t0 = time.monotonic()

        def status() -> dict[str, Any]:
            with psycopg.connect(dsn, autocommit=True) as conn:
                return R.status(conn)[0]

        deadline = t0 + 300
        while True:
            row = await asyncio.to_thread(status)
            ends = [d.at("confirmed") for d in desks if d.relay.jobs]
            if row["status"] in ("complete", "halted") and all(ends) and len(ends) >= row["targeted"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the rollout did not end in 5 minutes: {row['status']}, {row['done']} done")
            await asyncio.sleep(0.5)
        last = max(t for t in ends if t is not None)
        out["wall_s"] = last - t0
        out["central_cpu"] = 100 * (_cpu_s(pid) - cpu0) / (time.monotonic() - t0)
        out["own_cpu"] = 100 * (_own_cpu() - own0) / (time.monotonic() - t0)
        out["status"], out["targeted"], out["done"] = row["status"], row["targeted"], row["done"]
        with psycopg.connect(dsn, autocommit=True) as conn:
            stages = R.Rollout.from_json(conn.execute("SELECT state FROM rollouts").fetchone()[0]).stages  # type: ignore[index]
        by_name = {f"{SITE}/{d.name}": d for d in desks}
        out["stages"] = []
        previous_end = previous_seen = t0
        for n, members in enumerate(stages):
            group = [by_name[m] for m in members]
            sent = [watcher.updates.get(d.name, 0.0) for d in group]
            seen = [watcher.confirmed.get(d.name, 0.0) for d in group]
            queued = [d.at("queued") or 0.0 for d in group]
            done = [d.at("confirmed") or 0.0 for d in group]
            flashes = [(d.at("confirmed") or 0.0) - (d.at("verified") or 0.0) for d in group]
            soak = 0.0 if n == 0 else SOAK_S
            out["stages"].append(
                {
                    "size": len(group),
                    "start_late_s": min(queued) - previous_end - soak,  # after the soak was due
                    "spread_s": max(queued) - min(queued),
                    "to_verified_p50_s": percentile(
                        [(d.at("verified") or 0) - q for d, q in zip(group, queued, strict=True)], 0.5
                    ),
                    "flash_p50_s": percentile(flashes, 0.5),
                    "stage_s": max(done) - min(queued),
                    # at the broker: central's first update after the soak was due, and its spread
                    "sent_late_s": min(sent) - previous_seen - soak,
                    "sent_spread_s": max(sent) - min(sent),
                    "delivered_p50_s": percentile([q - t for q, t in zip(queued, sent, strict=True)], 0.5),
                    "status_p50_s": percentile(
                        [t - (d.at("confirmed") or 0) for d, t in zip(group, seen, strict=True)], 0.5
                    ),
                    "peak_cpu": sampler.peak(min(queued) - 0.5, max(done)),  # central, this process
                }
            )
            previous_end, previous_seen = max(done), max(seen)
        out["lag_p99_ms"] = 1000 * percentile(lag, 0.99) if lag else 0.0
        out["lag_max_ms"] = 1000 * max(lag, default=0.0)
        watcher.stop = sampler.stop = True
    finally:
        probe.cancel()
        for desk in desks:
            desk.client.closed = True
            for task in desk.tasks:
                task.cancel()
        await asyncio.gather(*(t for d in desks for t in d.tasks), return_exceptions=True)
        central.stop()
        mqtt.close()
    return out


# ---------------------------------------------------------------- 2. real daemons on simulated units


def _phase(phases: list[tuple[str, str, float]], name: str, message: dict[str, Any]) -> None:
    if message.get("event") == "update":
        phases.append((name, message["phase"], time.monotonic()))


async def _real_units(workdir: Path, pg: Postgres, count: int) -> dict[str, Any]:
    from offhook.daemon.service import Daemon
    from offhook.floor import client as floor_client

    names = [f"desk-{n:02d}" for n in range(count)]
    mqtt, dsn, central = _floor(pg, names)
    data = simfleet.sim_bundle()
    sha = B.sha256_hex(data)
    out: dict[str, Any] = {}
    tasks: list[asyncio.Task[Any]] = []
    clients: list[FloorClient] = []
    phases: list[tuple[str, str, float]] = []
    try:
        await central.start()
        assert central.process is not None
        async with simfleet.units(workdir, count) as units:
            daemons: list[Daemon] = []
            for name, unit in zip(names, units, strict=True):
                daemon, recorder = unit_daemon(unit.port_link, workdir / name, name)
                daemons.append(daemon)
                daemon.listeners.append(functools.partial(_phase, phases, name))
                tasks.append(asyncio.create_task(daemon.run()))
                floor = {**mqtt.floor_config(name), "central_url": central.url}
                clients.append(floor_client.attach(daemon, floor, recorder))
            for daemon in daemons:
                await asyncio.wait_for(daemon.unit_connected.wait(), 60)
            inventory = "SELECT count(*) FROM inventory WHERE connected AND board = 'sim'"
            await until(lambda: (query(dsn, inventory) or [(0,)])[0][0] == count, 60, every=0.2)
            await asyncio.sleep(3)  # the units idle: their VMs' own CPU, the reference for the flash
            pids = [unit._process.pid for unit in units if unit._process is not None]
            vm0, t0 = sum(_cpu_s(p) for p in pids), time.monotonic()
            await asyncio.sleep(IDLE_S / 2)
            out["idle_vm_cpu"] = 100 * (sum(_cpu_s(p) for p in pids) - vm0) / (time.monotonic() - t0) / count

            spec = R.Spec("bench", simfleet.NEW, "sim", sha, canary=100, canary_percent=True, soak_s=0)
            pid = central.process.pid
            cpu0, own0 = _cpu_s(pid), _own_cpu()
            vm_cpu: dict[int, float] = {}

            def vm_sample() -> None:  # a VM restarts on its reset: each process's CPU as last seen
                for unit in units:
                    if unit._process is not None:
                        with contextlib.suppress(OSError):
                            vm_cpu[unit._process.pid] = _cpu_s(unit._process.pid)

            vm_sample()
            vm_before = dict(vm_cpu)
            with psycopg.connect(dsn, autocommit=True) as conn:
                R.create(conn, spec, data)
            t0 = time.monotonic()
            ended: dict[int, float] = {}
            while len(ended) < count:
                for n, daemon in enumerate(daemons):
                    job = daemon.updates.jobs[0] if daemon.updates.jobs else None
                    if n not in ended and job is not None and job.phase in updates.ENDS:
                        ended[n] = time.monotonic()
                        if job.phase != "confirmed":
                            raise RuntimeError(f"{names[n]}: {job.phase} {job.reason}")
                vm_sample()
                if time.monotonic() - t0 > 600:
                    raise RuntimeError(f"only {len(ended)} of {count} units confirmed in 10 minutes")
                await asyncio.sleep(0.05)
            wall = max(ended.values()) - t0
            out["phases"] = [(name, phase, round(at - t0, 2)) for name, phase, at in phases]
            out["wall_s"] = wall
            out["first_s"] = min(ended.values()) - t0
            out["central_cpu"] = 100 * (_cpu_s(pid) - cpu0) / wall
            out["host_cpu"] = 100 * (_own_cpu() - own0) / wall
            out["vm_cpu"] = 100 * sum(v - vm_before.get(p, 0.0) for p, v in vm_cpu.items()) / wall
            # The shortest this could take on this machine's cores if they were all ours: the CPU spent.
            out["cpu_floor_s"] = (
                (out["vm_cpu"] + out["host_cpu"] + out["central_cpu"]) * wall / 100 / (os.cpu_count() or 1)
            )
            receiving = [
                next(t for n, p, t in phases if n == name and p == "rebooting")
                - next(t for n, p, t in phases if n == name and p == "receiving")
                for name in names
            ]
            out["receiving_p50_s"] = percentile(receiving, 0.5)
            out["fw"] = sorted({d.unit.fw for d in daemons if d.unit is not None})
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.close(goodbye=False)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        central.stop()
        mqtt.close()
    return out


@contextlib.contextmanager
def _fleet_key(workdir: Path) -> Iterator[None]:
    pub = workdir / "fleet.pub"
    public = keyring.key(0).public_key()
    pub.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    before = os.environ.get("OFFHOOK_FLEET_PUBKEY")
    os.environ["OFFHOOK_FLEET_PUBKEY"] = str(pub)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OFFHOOK_FLEET_PUBKEY", None)
        else:
            os.environ["OFFHOOK_FLEET_PUBKEY"] = before


def run() -> list[Figure]:
    figures: list[Figure] = []
    cores = os.cpu_count() or 1
    # The real units first: the 1,000 desks leave descriptors above 1,024, which pyserial's select() refuses.
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg, _fleet_key(Path(tmp)):
        one = asyncio.run(_real_units(Path(tmp) / "one", pg, 1))
        many = asyncio.run(_real_units(Path(tmp) / "many", pg, UNITS))
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp, postgres_server() as pg, _simulated_flash():
        # The reference: the same rollout to one desk per stage, on this machine as loaded now.
        small = asyncio.run(_orchestration(Path(tmp) / "small", pg, WAVES + 1))
        o = asyncio.run(_orchestration(Path(tmp) / "large", pg, DESKS))
    ideal = WAVES * SOAK_S + (WAVES + 1) * FLASH_S
    ratio = o["wall_s"] / ideal
    stages = "; ".join(
        f"stage {n}: {s['size']} desks, sent {s['sent_late_s']:.2f} s after due over {s['sent_spread_s']:.2f} s,"
        f" delivered p50 {s['delivered_p50_s']:.2f} s, to verified p50 {s['to_verified_p50_s']:.2f} s,"
        f" flash p50 {s['flash_p50_s']:.2f} s, confirmed → central p50 {s['status_p50_s']:.2f} s,"
        f" took {s['stage_s']:.2f} s; peak CPU central {s['peak_cpu'][0]:.0f} %, generator {s['peak_cpu'][1]:.0f} %"
        for n, s in enumerate(o["stages"])
    )
    desks = f"{o['done']}/{o['targeted']} desks confirmed ({o['status']})"
    figures += [
        Figure(
            AREA,
            f"rollout to {DESKS} desks: create → last unit confirmed",
            o["wall_s"],
            "s",
            f"ideal {ideal:.0f} s ({WAVES} soaks of {SOAK_S:g} s + {WAVES + 1} flashes of {FLASH_S:g} s);"
            f" one desk per stage: {small['wall_s']:.1f} s; {desks}",
        ),
        Figure(
            AREA,
            f"rollout to {DESKS} desks / ideal",
            ratio,
            "x",
            f"{o['wall_s']:.1f} s / {ideal:.0f} s; one desk per stage: {small['wall_s'] / ideal:.2f}; {load_before}",
            "<= 1.2",
            ratio <= 1.2,
        ),
        Figure(AREA, "rollout stages (canary + waves)", len(o["stages"]), "stages", stages),
        Figure(
            AREA,
            f"central CPU during the rollout ({DESKS} desks)",
            o["central_cpu"],
            "%",
            f"central idle with the same desks connected: {o['idle_cpu']:.1f} %;"
            f" peak (1 s) {max(s['peak_cpu'][0] for s in o['stages']):.0f} %; one core = 100 %",
        ),
        Figure(
            AREA,
            f"load generator CPU ({DESKS} rollout clients, one process)",
            o["own_cpu"],
            "%",
            f"idle before: {o['own_idle_cpu']:.0f} %; peak (1 s) {max(s['peak_cpu'][1] for s in o['stages']):.0f} %;"
            f" its event loop lag p99"
            f" {o['lag_p99_ms']:.0f} ms, max {o['lag_max_ms']:.0f} ms; bundle {o['bundle_kib']:.0f} KiB",
        ),
    ]
    ratio = many["wall_s"] / one["wall_s"]
    figures += [
        Figure(
            AREA,
            f"rollout to {UNITS} real daemons on simulated units / 1",
            ratio,
            "x",
            f"{many['wall_s']:.1f} s / {one['wall_s']:.1f} s (first of {UNITS} at {many['first_s']:.1f} s); transfer"
            f" p50 {many['receiving_p50_s']:.1f} s / {one['receiving_p50_s']:.1f} s; the CPU spent, over {cores} cores:"
            f" {many['cpu_floor_s']:.1f} s / {one['cpu_floor_s']:.1f} s, so {UNITS} units cannot take less than"
            f" {max(one['wall_s'], many['cpu_floor_s']) / one['wall_s']:.2f}x here and took"
            f" {many['wall_s'] / max(one['wall_s'], many['cpu_floor_s']):.2f}x that; {_load()}",
            "<= 1.3",
            ratio <= 1.3,
        ),
        Figure(
            AREA,
            f"simulated units' CPU while {UNITS} update",
            many["vm_cpu"],
            "% of a core",
            f"1 unit: {one['vm_cpu']:.0f} %; this process (daemons, unit relays):"
            f" {many['host_cpu']:.0f} % (1: {one['host_cpu']:.0f} %); central {many['central_cpu']:.0f} %;"
            f" {cores} cores shared",
        ),
        Figure(
            AREA,
            "one idle simulated unit (VM) CPU",
            many["idle_vm_cpu"],
            "% of a core",
            f"mean of {UNITS} idle behind their daemons; 1 alone: {one['idle_vm_cpu']:.1f} %",
        ),
    ]
    return figures


if __name__ == "__main__":
    for figure in run():
        print(figure.row())
