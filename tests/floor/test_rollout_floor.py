"""A staged rollout over the real floor: `offhook central` (RolloutService, /bundles on its HTTPS) with
a real Mosquitto and PostgreSQL, and three real daemons on simulated units whose floor clients take
central's ``update`` (``[floor] central_url``) into their update relays. A canary of one, then the
rest after the soak; every unit confirmed on the new version, the rollout complete."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg

from offhook import bundle as B
from offhook.daemon.service import Daemon
from offhook.floor import client as floor_client
from offhook.floor import rollouts as R
from offhook.floor.client import FloorClient
from tests.fleet import simfleet
from tests.fleet.test_daemon_updates import fleet_key  # noqa: F401  (the fixture)
from tests.floor.rig import CentralTask, Mosquitto, query, run, unit_daemon, until
from tests.floor.webrig import web_for

NAMES = ["desk-01", "desk-02", "desk-03"]


def test_a_canary_of_one_then_the_rest_over_real_daemons(
    db: str,
    mqtt: Mosquitto,
    tmp_path: Path,
    fleet_key: Path,  # noqa: F811
) -> None:
    data = simfleet.sim_bundle()
    sha = B.sha256_hex(data)

    async def scenario() -> None:
        task = CentralTask(mqtt, db)
        web = web_for(task.central, mqtt, db)
        async with task, simfleet.units(tmp_path, len(NAMES)) as units:
            await asyncio.wait_for(web.ready.wait(), 10)
            daemons: list[Daemon] = []
            clients: list[FloorClient] = []
            tasks: list[asyncio.Task[Any]] = []
            phases: list[tuple[str, str]] = []
            try:
                async with mqtt.broker("central-2").client("central-2") as watcher:
                    await watcher.subscribe("offhook/v1/hq/+/update_status", qos=1)

                    async def watch() -> None:
                        async for message in watcher.messages:
                            assert isinstance(message.payload, bytes)
                            phases.append((str(message.topic).split("/")[3], json.loads(message.payload)["phase"]))

                    tasks.append(asyncio.create_task(watch()))
                    for name, unit in zip(NAMES, units, strict=True):
                        daemon, recorder = unit_daemon(unit.port_link, tmp_path / name, name)
                        daemons.append(daemon)
                        tasks.append(asyncio.create_task(daemon.run()))
                        floor = {**mqtt.floor_config(name), "central_url": f"https://localhost:{web.port}"}
                        clients.append(floor_client.attach(daemon, floor, recorder, ack_timeout_s=1.0))
                    for daemon in daemons:
                        await asyncio.wait_for(daemon.unit_connected.wait(), 30)
                    old = {d.unit.fw for d in daemons if d.unit is not None}
                    assert len(old) == 1 and simfleet.NEW not in old
                    # Central knows all three units (inventory: connected, board sim) before the rollout.
                    try:
                        await until(
                            lambda: len(query(db, "SELECT 1 FROM inventory WHERE connected AND board = 'sim'")) == 3,
                            30,
                        )
                    except TimeoutError:
                        shown = [(c.feed.desk, c.connected.is_set(), c.feed.inventory is not None) for c in clients]
                        rows = query(db, "SELECT desk, connected, board FROM inventory")
                        raise AssertionError((rows, shown)) from None
                    with psycopg.connect(db, autocommit=True) as conn:
                        spec = R.Spec("r1", simfleet.NEW, "sim", sha, canary=1, wave_percent=100, soak_s=2.0)
                        R.create(conn, spec, data)

                    def status() -> dict[str, Any]:
                        with psycopg.connect(db, autocommit=True) as conn:
                            return R.status(conn)[0]

                    await until(lambda: status()["status"] == "complete", 240, every=0.5)
                    await until(lambda: all(d.unit is not None and d.unit.fw == simfleet.NEW for d in daemons), 30)
                    await until(lambda: sum(phase == "confirmed" for _, phase in phases) == 3, 10)
            finally:
                for client in clients:
                    await client.close(goodbye=False)
                for running in tasks:
                    running.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await running
        row = status()
        assert (row["done"], row["targeted"]) == (3, 3), row
        # The canary confirmed before any other desk heard of the update.
        canary = phases[0][0]
        confirmed = phases.index((canary, "confirmed"))
        assert all(desk == canary for desk, _ in phases[:confirmed]), phases
        assert {desk for desk, phase in phases if phase == "confirmed"} == set(NAMES)

    run(scenario(), 300)
