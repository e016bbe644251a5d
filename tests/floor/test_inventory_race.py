"""A desk's floor client greets the broker with its latest inventory, state and queued alerts. What
changes while those first messages are still on their way (the unit connects while the client's
session is starting, as it did for one desk in 3 runs of 16 of the rollout floor test) must reach
central too: the inventory row a rollout targets, and the alert, never dropped until a reconnect."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from offhook.floor.client import Publish
from tests.floor.rig import CentralTask, Mosquitto, SinkDesk, query, run, until

UNIT = {"serial": "E66138", "board": "sim", "firmware": "1.0.0", "slot": "a", "health": "ok", "transport": "serial"}


def test_what_changes_while_a_session_starts_reaches_central(db: str, mqtt: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with CentralTask(mqtt, db):
            desk = SinkDesk(mqtt, "desk-01", tmp_path)
            client = desk.client
            send = client._send
            sends = 0

            async def send_then_change(mqtt_client: Any, publish: Publish) -> None:
                nonlocal sends
                await send(mqtt_client, publish)
                sends += 1
                if sends == 1:  # the presence is out, the rest of the greeting not yet: the unit connects
                    client.event({"event": "unit", "connected": True}, UNIT)
                elif sends == 2:  # and a call is missed meanwhile
                    client.event({"event": "missed_call", "call": "c1@pbx"})

            client._send = send_then_change  # type: ignore[method-assign]
            desk.start()
            try:
                await asyncio.wait_for(client.connected.wait(), 10)
                await until(lambda: query(db, "SELECT board, connected FROM inventory") == [("sim", True)], 10)
                await until(lambda: query(db, "SELECT kind, call_id FROM alerts") == [("missed_call", "c1@pbx")], 10)
            finally:
                await desk.stop()

    run(scenario(), 60)
