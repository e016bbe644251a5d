"""Fleet tools borrow the daemon's unit through the API; reconnects leak no tasks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from websockets.asyncio.client import connect

from offhook.api.server import ApiServer
from offhook.api.tokens import TokenStore
from offhook.daemon.unit import UnitSession
from offhook.softphone.base import EventKind
from offhook.transport.serial import SerialTransport
from tests.integration.desk_rig import Desk


async def ask(ws, **message) -> dict:  # type: ignore[no-untyped-def]
    await ws.send(json.dumps(message))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if reply.get("type") != "event":
            return reply


def test_unit_lent_for_an_update_then_given_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Desk(tmp_path) as desk:
            assert desk.daemon is not None
            tokens = TokenStore()
            api = ApiServer(desk.daemon, tokens, 0)
            await api.start()
            url = f"ws://127.0.0.1:{api.port}/api"
            async with connect(url) as tool:
                await tool.send(json.dumps({"type": "auth", "token": tokens.user_token()}))
                await tool.recv()
                unit = (await ask(tool, type="unit"))["unit"]
                assert unit["serial"] == desk.unit.serial and unit["path"] == str(desk.unit.port_link)

                # During a call the unit is not lent: an update never interrupts a live call.
                await desk.customer_calls()
                await desk.wait_lamps({"hook": "moving"})
                await desk.unit.press("hook")
                await desk.event(desk.customer, EventKind.ESTABLISHED)
                refused = await ask(tool, type="lend_unit")
                assert not refused["ok"] and "call" in refused["error"]
                await desk.unit.press("hook")
                await desk.wait_lamps({"status": "solid:green"}, timeout=8)  # wrap-up over

                lent = await ask(tool, type="lend_unit")
                assert lent["ok"] and lent["serial"] == desk.unit.serial
                session = UnitSession(SerialTransport(lent["path"]))  # the tool opens the port itself
                info = await session.connect(timeout=5)
                assert info.serial == desk.unit.serial
                session.close()
                assert (await ask(tool, type="return_unit"))["ok"]
            await asyncio.wait_for(desk.daemon.unit_connected.wait(), 10)  # the daemon has it back
            await desk.wait_lamps({"status": "solid:green"})

            # A tool that disconnects without returning the unit gives it back too.
            async with connect(url) as tool:
                await tool.send(json.dumps({"type": "auth", "token": tokens.user_token()}))
                await tool.recv()
                assert (await ask(tool, type="lend_unit"))["ok"]
            await asyncio.wait_for(desk.daemon.unit_connected.wait(), 10)
            await api.stop()

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_client_helpers_find_and_borrow_the_daemons_unit(tmp_path: Path) -> None:
    from offhook.api.client import borrowed_unit, daemon_unit

    async def scenario() -> None:
        async with Desk(tmp_path) as desk:
            assert desk.daemon is not None
            api = ApiServer(desk.daemon, TokenStore(), 0)
            await api.start()
            unit = await daemon_unit(api.port)
            assert unit is not None and unit["serial"] == desk.unit.serial
            async with borrowed_unit(api.port) as path:
                assert not desk.daemon.unit_connected.is_set()
                session = UnitSession(SerialTransport(path))
                assert (await session.connect(timeout=5)).serial == desk.unit.serial
                session.close()
            await asyncio.wait_for(desk.daemon.unit_connected.wait(), 10)
            await api.stop()
            assert await daemon_unit(api.port) is None  # no daemon listening: None, not an error

    asyncio.run(asyncio.wait_for(scenario(), 120))


def test_reconnects_leak_no_tasks(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Desk(tmp_path) as desk:
            assert desk.daemon is not None
            counts = []
            for _ in range(4):
                await desk.unit.unplug()
                await desk.unit.replug()
                await asyncio.wait_for(desk.daemon.unit_connected.wait(), 10)
                await desk.wait_lamps({"status": "solid:green"})
                counts.append(len(asyncio.all_tasks()))
            assert counts[-1] <= counts[0], counts

    asyncio.run(asyncio.wait_for(scenario(), 120))
