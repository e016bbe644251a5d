"""`make floor`: a demo floor on this machine, until Ctrl-C.

Mosquitto and PostgreSQL (the test rig's: temporary directories, free ports, PostgreSQL as the
unprivileged user), `offhook central run --https` as its own process, three desks of real daemons
whose units are simulated (the real firmware on the MicroPython VM) taking simulated calls from
their web softphones, and the floor benchmark's load generator for a few hundred more desks
(the daemon's own FloorClient and MetricsSink, without units). Prints the wallboard's URL and a
supervisor token (and an IT token for the inventory).

    python -m tests.floor.demo [--desks 300] [--port 8443] [--hold-reminder-s 60] [--screenshot F.png]

With --screenshot it logs a headless Chromium in after --settle-s, saves the wallboard and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from offhook import config
from offhook.daemon.service import Daemon
from offhook.floor import auth
from offhook.floor import client as floor_client
from offhook.floor.client import FloorClient
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder
from offhook.sim.unit import SimulatedUnit
from offhook.softphone.web import WebSoftphone
from tests.bench.bench_floor import LoadDesk
from tests.floor.rig import SITE, Mosquitto, Postgres, free_port
from tests.floor.webrig import CentralWebProcess, make_token

TEAMS = ("blue", "red", "green", "amber")
DAEMON_DESKS = [("desk-01", "blue", "ann"), ("desk-02", "blue", "ben"), ("desk-03", "red", "cleo")]


class Page:
    name = "demo"

    def post(self, message: dict[str, Any]) -> None:
        pass


class DemoLoadDesk(LoadDesk):
    """The benchmark's load desk in a team, with longer holds now and then (a wallboard shows them)."""

    def __init__(self, mqtt: Mosquitto, name: str, workdir: Path, team: str) -> None:
        super().__init__(mqtt, name, workdir)
        self.client = FloorClient(mqtt.broker(name), site=SITE, desk=name, team=team, recorder=self.recorder)

    async def work(self, until: float, rng: random.Random) -> None:
        await asyncio.sleep(rng.uniform(0, 20))
        self.state(rng.choice(["available", "available", "available", "break"]), [])
        while time.monotonic() < until:
            await asyncio.sleep(rng.expovariate(1 / 60))
            self.calls += 1
            call = f"{self.name}-demo-{self.calls}@pbx"
            self.moment("ringing", call, direction="inbound", peer=f"+49301{rng.randrange(10**7):07d}")
            self.state("available", [{"state": "ringing"}])
            await asyncio.sleep(rng.uniform(2, 12))
            if rng.random() < 0.08:
                self.moment("missed", call)
                self.state("available", [])
                continue
            self.moment("answered", call)
            self.state("on_call", [{"state": "active"}])
            await asyncio.sleep(rng.uniform(20, 120))
            if rng.random() < 0.35:
                self.moment("hold_started", call)
                self.state("on_call", [{"state": "held", "held_s": 0.0}])
                await asyncio.sleep(rng.uniform(5, 150))
                self.moment("hold_ended", call)
                self.state("on_call", [{"state": "active"}])
                await asyncio.sleep(rng.uniform(5, 30))
            self.moment("hung_up", call)
            self.state("wrap_up", [])
            await asyncio.sleep(rng.uniform(5, 40))
            self.moment("wrap_up_ended", call)
            self.state("break" if rng.random() < 0.1 else "available", [])


async def daemon_desk(
    mqtt: Mosquitto, workdir: Path, desk: str, team: str, agent: str, stop: asyncio.Event, ready: asyncio.Event
) -> None:
    """A real daemon with a simulated unit; its web softphone takes a call now and then."""
    unit = SimulatedUnit(f"0ff0514d0000d{int(desk[-2:]):03d}", workdir / desk / "flash")
    await unit.start()
    cfg = config.validate(
        {"unit": {"port": str(unit.port_link)}, "softphone": {"kind": "api"}, "timers": {"wrap_up_s": 15}}
    )
    recorder = CallRecorder(workdir / desk / "metrics.sqlite3")
    softphone = WebSoftphone()
    daemon = Daemon(
        cfg, softphone, workdir / desk / "state.json", recorder=MetricsSink(recorder, agent=agent, tz="Europe/Berlin")
    )
    running = asyncio.create_task(daemon.run())
    floor = floor_client.attach(daemon, mqtt.floor_config(desk, team), recorder)
    rng = random.Random(desk)
    try:
        await asyncio.wait_for(daemon.unit_connected.wait(), 60)
        ready.set()
        softphone.register(Page())
        calls = 0
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(5, 30))
            calls += 1
            call = f"{desk}-{calls}@pbx"

            def phone(event: str, call: str = call) -> None:
                softphone.report({"event": event, "call": call, "peer": f"+4930{rng.randrange(10**7):07d}"})

            phone("incoming")
            await asyncio.sleep(rng.uniform(2, 10))
            phone("established")
            await asyncio.sleep(rng.uniform(15, 60))
            if rng.random() < 0.5:
                phone("held")
                await asyncio.sleep(rng.uniform(10, 150))
                phone("resumed")
                await asyncio.sleep(rng.uniform(5, 30))
            phone("closed")
            await asyncio.sleep(20)  # wrap-up (15 s) and a breath
    finally:
        await floor.stop()
        if floor.task is not None:
            floor.task.cancel()
        running.cancel()
        for task in (floor.task, running):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await unit.stop()


async def screenshot(url: str, token: str, path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True)
        page = await (
            await browser.new_context(ignore_https_errors=True, viewport={"width": 1600, "height": 1000})
        ).new_page()
        await page.goto(f"{url}/login")
        await page.fill("#token", token)
        await page.click("button[type=submit]")
        await expect(page.locator("#live")).to_have_text("Live", timeout=10000)
        await page.select_option("#site", SITE)
        await asyncio.sleep(1.5)
        await page.screenshot(path=str(path))
        await browser.close()


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="offhook-floor-demo-"))
    load_names = [f"load-{n:03d}" for n in range(1, args.desks + 1)]
    pg = Postgres()
    pg.start()
    mqtt = Mosquitto([d for d, _, _ in DAEMON_DESKS] + load_names)
    mqtt.start()
    dsn = pg.new_database()
    port = args.port or free_port()
    try:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
    except OSError:
        port = free_port()  # 8443 is taken: any free port
    central = CentralWebProcess(mqtt, dsn, hold_reminder_s=args.hold_reminder_s, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[Any]] = []
    loads: list[DemoLoadDesk] = []
    try:
        await central.start()
        supervisor = make_token(dsn, auth.SUPERVISOR, "demo supervisor")
        it = make_token(dsn, auth.IT, "demo IT")
        readies = []
        for desk, team, agent in DAEMON_DESKS:
            readies.append(asyncio.Event())
            tasks.append(asyncio.create_task(daemon_desk(mqtt, workdir, desk, team, agent, stop, readies[-1])))
        # The units' serial ports first: pyserial's select() fails on descriptors past 1,024, and the
        # load desks open hundreds of sockets.
        await asyncio.wait_for(asyncio.gather(*(ready.wait() for ready in readies)), 90)
        rng = random.Random(21)
        until = time.monotonic() + 10**9
        for name in load_names:
            load = DemoLoadDesk(mqtt, name, workdir, rng.choice(TEAMS))
            load.task = asyncio.create_task(load.client.run())
            tasks.append(asyncio.create_task(load.work(until, random.Random(name))))
            loads.append(load)
        print(f"\nThe demo floor: {len(DAEMON_DESKS)} daemons with simulated units, {len(loads)} load desks.")
        print(f"  wallboard   {central.url}/wallboard   (test CA: {mqtt.dir / 'ca.pem'})")
        print(f"  supervisor token   {supervisor}")
        print(f"  IT token           {it}   (inventory: {central.url}/inventory)")
        print(f"  PostgreSQL  {dsn}")
        url = f"postgresql://offhook@127.0.0.1:{pg.port}/{dsn.split('dbname=')[1]}"
        print(f"  floor report  offhook report --db '{url}' --by team")
        print("Ctrl-C stops it.\n", flush=True)
        if args.screenshot:
            await asyncio.sleep(args.settle_s)
            await screenshot(central.url, supervisor, args.screenshot)
            print(f"wallboard screenshot written to {args.screenshot}")
            stop.set()
        await stop.wait()
    finally:
        stop.set()
        central.stop()
        pending = [*tasks, *(load.task for load in loads if load.task)]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)
        mqtt.close()
        pg.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--desks", type=int, default=300, help="load-generator desks besides the 3 daemons")
    parser.add_argument("--port", type=int, default=8443, help="the wallboard's HTTPS port (0: any free one)")
    parser.add_argument("--hold-reminder-s", type=float, default=60.0, help="holds are highlighted past this")
    parser.add_argument("--screenshot", type=Path, help="save the wallboard here after --settle-s, then stop")
    parser.add_argument("--settle-s", type=float, default=90.0)
    args = parser.parse_args(argv)
    from tests.floor.rig import _many_files

    _many_files()
    code = asyncio.run(main(args))
    sys.stdout.flush()
    os._exit(code)  # the simulated units' serial reader threads would hold the exit up


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
