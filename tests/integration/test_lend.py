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


def test_flash_and_devices_go_through_the_running_daemon(tmp_path: Path) -> None:
    """`offhook devices` describes the daemon's unit from the daemon; `offhook flash` borrows it
    when the agent is idle and is refused (with the reason) during a call."""
    import os
    import subprocess
    import sys

    from offhook import config
    from tests.fleet import keyring, simfleet

    offhook = Path(sys.executable).with_name("offhook")
    bundle = tmp_path / "release.bundle"
    bundle.write_bytes(simfleet.sim_bundle())

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([offhook, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))

    async def scenario() -> None:
        async with Desk(tmp_path, key_hex=keyring.n_hex(0)) as desk:
            assert desk.daemon is not None
            api = ApiServer(desk.daemon, TokenStore(), 0)
            await api.start()
            config.default_config_path().parent.mkdir(parents=True, exist_ok=True)
            config.default_config_path().write_text(f"[api]\nport = {api.port}\n")

            devices = await asyncio.to_thread(cli, "devices", "--json")
            assert devices.returncode == 0, devices.stderr
            (unit,) = [d for d in json.loads(devices.stdout) if d["serial"] == desk.unit.serial]
            assert unit["transport"] == "serial (daemon)" and unit["fw"] == "0.1.0"

            await desk.answer_call()
            refused = await asyncio.to_thread(cli, "flash", str(bundle), "--all", "--json")
            assert refused.returncode == 1
            (result,) = json.loads(refused.stdout)
            assert result["result"] == "failed" and "call" in result["reason"]
            await desk.unit.press("hook")
            await desk.wait_lamps({"status": "solid:green"}, timeout=8)

            flashed = await asyncio.to_thread(cli, "flash", str(bundle), "--all", "--json")
            assert flashed.returncode == 0, flashed.stdout + flashed.stderr
            (result,) = json.loads(flashed.stdout)
            assert (result["old"], result["new"], result["result"]) == ("0.1.0", simfleet.NEW, "ok")
            await asyncio.wait_for(desk.daemon.unit_connected.wait(), 15)  # back with the daemon
            assert desk.daemon.unit is not None and desk.daemon.unit.firmware == simfleet.NEW
            await api.stop()

    asyncio.run(asyncio.wait_for(scenario(), 180))
