"""A call on a real daemon (simulated unit: the real firmware on the MicroPython VM; the web softphone
driven as its page would) reaches central: its live states in order, its record once, the unit's
inventory, and the unit's loss as an alert. The daemon's own log carries no password and no number."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import pytest

from offhook import config
from offhook.daemon.service import Daemon
from offhook.floor import client as floor_client
from offhook.floor.client import Broker, FloorClient
from offhook.floor.pgstore import Batch
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder
from offhook.sim.unit import SimulatedUnit
from offhook.softphone.web import WebSoftphone
from tests.floor.rig import SITE, CentralTask, Mosquitto, SinkDesk, count, query, run, until

SERIAL = "0ff0514d0000f100"
NUMBER = "+4930555123456"


class Page:
    name = "test page"

    def post(self, message: dict[str, Any]) -> None:
        pass


def test_a_call_on_a_real_daemon_reaches_central_in_order_and_once(
    db: str, mqtt: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        unit = SimulatedUnit(SERIAL, tmp_path / "flash")
        await unit.start()
        floor = mqtt.floor_config("desk-01")
        cfg = config.validate(
            {"unit": {"port": str(unit.port_link)}, "softphone": {"kind": "api"}, "timers": {"wrap_up_s": 1}}
        )
        recorder = CallRecorder(tmp_path / "data" / "metrics.sqlite3")
        softphone = WebSoftphone()
        daemon = Daemon(cfg, softphone, tmp_path / "state.json", recorder=MetricsSink(recorder, agent="ann", tz="UTC"))
        statuses: list[str] = []

        def seen(batch: Batch) -> None:
            for (_, desk), body in batch.states.items():
                if desk == "desk-01" and (not statuses or statuses[-1] != body["status"]):
                    statuses.append(body["status"])

        async with CentralTask(mqtt, db) as central:
            central.on_commit = seen
            running = asyncio.create_task(daemon.run())
            client = floor_client.attach(daemon, floor, recorder, ack_timeout_s=1.0)
            try:
                await asyncio.wait_for(daemon.unit_connected.wait(), 20)
                softphone.register(Page())
                await until(lambda: statuses[-1:] == ["available"], 10)

                async def step(event: str, want: str) -> None:
                    softphone.report({"event": event, "call": "call-1@pbx", "peer": NUMBER})
                    await until(lambda: statuses[-1:] == [want], 5)

                await step("incoming", "ringing")
                await step("established", "on_call")
                await step("held", "on_hold")
                await step("resumed", "on_call")
                await step("closed", "wrap_up")
                await until(lambda: statuses[-1:] == ["available"], 5)  # wrap-up ends after 1 s
                await until(lambda: count(db) == 1, 5)
                row = query(db, "SELECT desk, call_id, outcome, number, holds FROM calls")[0]
                assert row[:3] == ("desk-01", "call-1@pbx", "answered") and row[4] == 1
                assert row[3].startswith("h1:") and NUMBER not in row[3]
                await until(lambda: recorder.floor_acked() == 1, 5)
                inventory = query(db, "SELECT serial, board, firmware, transport, connected FROM inventory")
                assert inventory and inventory[0][0] == SERIAL and inventory[0][3] == "serial" and inventory[0][4]
                assert query(db, "SELECT online FROM desks WHERE desk = 'desk-01'") == [(True,)]
                await unit.stop()  # the unit is unplugged: inventory says so, and an alert goes out
                await until(lambda: query(db, "SELECT kind FROM alerts") == [("unit_lost",)], 10)
                assert query(db, "SELECT connected FROM inventory") == [(False,)]
                await client.stop()  # the daemon says goodbye: offline at once, no keepalive wait
                await until(lambda: query(db, "SELECT online FROM desks WHERE desk = 'desk-01'") == [(False,)], 5)
            finally:
                await client.stop()
                assert client.task is not None
                client.task.cancel()
                running.cancel()
                for task in (client.task, running):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await unit.stop()
        assert statuses == ["available", "ringing", "on_call", "on_hold", "on_call", "wrap_up", "available"]
        assert count(db) == 1

    run(scenario(), 90)
    text = caplog.text
    assert NUMBER not in text and mqtt.password("desk-01") not in text and mqtt.password("central-1") not in text


def test_alerts_reach_central_and_a_client_certificate_is_a_desk_credential(db: str, tmp_path: Path) -> None:
    mqtt = Mosquitto(["desk-01", "desk-02"], client_certs=True)
    mqtt.start()
    try:

        async def scenario() -> None:
            async with CentralTask(mqtt, db):
                desk = SinkDesk(mqtt, "desk-01", tmp_path)
                secrets = mqtt.dir / "secrets"
                # desk-02 logs in with its certificate (its CN is its username), no password.
                floor = mqtt.floor_config("desk-02") | {
                    "password_file": "",
                    "broker": f"mqtts://localhost:{mqtt.port + 1}",
                }
                floor |= {"cert_file": str(secrets / "desk-02.pem"), "key_file": str(secrets / "desk-02.key")}
                by_cert = FloorClient(
                    Broker.from_config(floor), site=SITE, desk="desk-02", team="red", recorder=desk.recorder
                )
                desk.start()
                certified = asyncio.create_task(by_cert.run())
                try:
                    desk.client.event(
                        {"event": "state", "agent": "on_call", "call": "held", "calls": [{"state": "held"}]}
                    )
                    desk.client.event({"event": "hold_reminder", "call": "c1@pbx", "held_s": 120})
                    desk.client.event({"event": "hold_reminder", "call": "c1@pbx", "held_s": 240})
                    desk.client.event({"event": "missed_call", "call": "c2@pbx", "peer": NUMBER})
                    by_cert.event({"event": "state", "agent": "break", "call": "idle", "calls": []})
                    want = [("desk-01", "long_hold", "c1@pbx"), ("desk-01", "missed_call", "c2@pbx")]
                    await until(lambda: query(db, "SELECT desk, kind, call_id FROM alerts ORDER BY seq") == want, 10)
                    await until(
                        lambda: query(db, "SELECT status FROM live_state WHERE desk = 'desk-02'") == [("break",)]
                    )
                finally:
                    await desk.stop()
                    certified.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await certified

        run(scenario(), 40)
    finally:
        mqtt.close()
