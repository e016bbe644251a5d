"""Faults with the whole desk (real firmware on the simulated unit, daemon, real baresip).

After each: the lamps show the true state again once the link is back, no call is
answered or ended by the product on its own, and the call's metrics moments are not
duplicated. (Daemon SIGKILL, sleep/resume and baresip restarts are in
tests/integration/test_daemon_process.py and test_desk_e2e.py.)
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from offhook.softphone.base import CallState, EventKind
from tests.integration.desk_rig import Desk


def run(coro) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(asyncio.wait_for(coro, 120))


def test_unplug_replug_while_ringing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Desk(tmp_path, ring_timeout_s=60) as desk:
            await desk.customer_calls()
            await desk.wait_lamps({"hook": "moving"})
            await desk.unit.unplug()
            await desk.unit.replug()
            await desk.wait_lamps({"hook": "moving", "status": "solid:green"})  # still ringing, truthfully
            assert desk.customer is not None
            assert [c.state for c in desk.customer.calls.values()] == [CallState.OUTGOING]  # nobody answered it
            await desk.unit.press("hook")  # and it can still be answered from the unit
            await desk.event(desk.customer, EventKind.ESTABLISHED)
            await desk.wait_lamps({"hook": "solid"})
            assert desk.records.count("ringing") == 1 and desk.records.count("answered") == 1

    run(scenario())


def test_unit_frozen_for_5_seconds_mid_call(tmp_path: Path) -> None:
    """The unit's VM stops for 5 s (a hung board): the daemon declares it lost, the call goes on,
    and when the unit runs again the daemon resynchronises it."""

    async def scenario() -> None:
        async with Desk(tmp_path) as desk:
            await desk.answer_call()
            await desk.unit.press("mute")
            await desk.wait_lamps({"hook": "solid", "mute": "solid"})
            process = desk.unit._process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)
            await asyncio.sleep(5)
            os.kill(process.pid, signal.SIGCONT)
            await desk.wait_lamps({"hook": "solid", "mute": "solid", "status": "solid:red"}, timeout=8)
            assert desk.customer is not None and desk.customer.calls  # the call went on
            assert desk.records.count("answered") == 1 and "hung_up" not in desk.records

    run(scenario())


def test_unplug_during_an_update(tmp_path: Path) -> None:
    """The cable is pulled while the bundle streams: the unit boots its old, confirmed version; the
    flasher's retry after replug installs the update (a slot is switched only once it is whole)."""
    from offhook.fleet import build, flasher
    from tests.fleet import simfleet

    data = simfleet.sim_bundle()
    manifest = build.peek_manifest(data)

    async def scenario() -> None:
        async with simfleet.units(tmp_path, 1) as (unit,):
            path = str(unit.port_link)
            pulled = asyncio.Event()

            def progress(_path: str, done: int, total: int, phase: str) -> None:
                if phase == "sending" and 0 < done < total and not pulled.is_set():
                    pulled.set()

            async def pull_cable() -> None:
                await pulled.wait()
                await unit.unplug()
                await asyncio.sleep(0.5)
                await unit.replug()

            cable = asyncio.create_task(pull_cable())
            result = await flasher.Flasher(path, data, manifest, progress).run(retries=3)
            await cable
            assert result.result == "ok", result.reason
            assert (result.old, result.new) == ("0.1.0", simfleet.NEW)
            info = await flasher.query(path)
            assert (info.fw, info.health) == (simfleet.NEW, "confirmed")

    run(scenario())


def test_unplugged_mid_update_and_not_retried_keeps_the_old_version(tmp_path: Path) -> None:
    from offhook.fleet import build, flasher
    from tests.fleet import simfleet

    data = simfleet.sim_bundle()

    async def scenario() -> None:
        async with simfleet.units(tmp_path, 1) as (unit,):
            path = str(unit.port_link)
            pulled = asyncio.Event()

            def progress(_path: str, done: int, total: int, phase: str) -> None:
                if phase == "sending" and 0 < done < total:
                    pulled.set()

            async def pull_cable() -> None:
                await pulled.wait()
                await unit.unplug()
                await asyncio.sleep(0.3)
                await unit.replug()

            cable = asyncio.create_task(pull_cable())
            result = await flasher.Flasher(path, data, build.peek_manifest(data), progress).run(retries=0)
            await cable
            assert result.result != "ok"
            info = await flasher.query(path)
            assert (info.fw, info.health) == ("0.1.0", "confirmed")  # never a half-installed slot

    run(scenario())


def test_port_failing_on_a_write_mid_update_is_a_failed_try_not_a_crash(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The cable pulled just as the flasher writes: the port raises EIO inside a chunk's write
    (not the reader noticing first). That is one failed try with a reason, retried if allowed."""
    from offhook.fleet import build, flasher
    from offhook.transport.base import TransportClosed
    from offhook.transport.serial import SerialTransport
    from tests.fleet import simfleet

    data = simfleet.sim_bundle()
    writes_before_the_cable_goes = [20]

    class PulledMidWrite(SerialTransport):
        async def write(self, data: bytes) -> None:
            writes_before_the_cable_goes[0] -= 1
            if writes_before_the_cable_goes[0] == 0:
                raise TransportClosed(f"{self.path}: write failed: [Errno 5] Input/output error")
            await super().write(data)

    monkeypatch.setattr(flasher, "SerialTransport", PulledMidWrite)

    async def scenario() -> None:
        async with simfleet.units(tmp_path, 1) as (unit,):
            path = str(unit.port_link)
            once = await flasher.Flasher(path, data, build.peek_manifest(data)).run(retries=0)
            assert (once.result, once.tries) == ("failed", 1)
            assert "Input/output error" in once.reason
            assert (await flasher.query(path)).fw == "0.1.0"
            writes_before_the_cable_goes[0] = 20
            retried = await flasher.Flasher(path, data, build.peek_manifest(data)).run(retries=1)
            assert (retried.result, retried.tries) == ("ok", 2), retried.reason

    run(scenario())
