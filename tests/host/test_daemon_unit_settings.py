"""The daemon carries the unit's part of central's settings to the unit it owns (the real firmware on
the MicroPython VM), over its own session: read first, sent only when it differs and only while the
desk is idle (a policy, or a unit that comes back with other settings), verified by the unit's
CONFIG answer. A button map without hook that got past the
desk's own check is refused by the unit itself, and nothing changes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from offhook import config
from offhook.daemon.service import Daemon
from offhook.settings import Policy
from offhook.sim.unit import SimulatedUnit
from offhook.softphone.web import WebSoftphone
from tests.floor.rig import until


class Page:
    name = "test page"

    def post(self, message: dict[str, Any]) -> None:
        pass


def test_unit_settings_are_read_sent_when_idle_verified_and_a_map_without_hook_is_refused(tmp_path: Path) -> None:
    unit = SimulatedUnit("0ff0514d000000b1", tmp_path / "flash")
    on_flash = tmp_path / "flash" / "files" / "config.json"

    def flash() -> dict[str, Any]:
        return json.loads(on_flash.read_text()) if on_flash.exists() else {}

    async def scenario() -> None:
        await unit.start()
        softphone = WebSoftphone()
        cfg = config.validate({"unit": {"port": str(unit.port_link)}, "softphone": {"kind": "api"}})
        daemon = Daemon(cfg, softphone, tmp_path / "state.json")
        reports: list[dict[str, Any]] = []
        daemon.listeners.append(lambda m: reports.append(m["unit"]) if m.get("event") == "settings" else None)
        running = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.unit_connected.wait(), 30)
            softphone.register(Page())
            state = daemon.unit_settings

            # Idle: sent, and verified by the unit's answer; the report never shows the old version.
            daemon.set_policy(Policy(1, {"desk": {"brightness": 10}}))
            await until(lambda: state.state == {"version": 1, "state": "verified", "error": None}, 15)
            assert flash()["brightness"] == 10
            assert [r["version"] for r in reports] == [1] * len(reports) and reports[0]["state"] == "checking"
            assert daemon.settings_report()["unit"]["effective"]["brightness"] == {
                "value": 10,
                "source": "desk",
                "locked": False,
            }

            # Mid-call the change waits with the whole policy; it goes when the desk is idle again.
            softphone.report({"event": "incoming", "call": "c1@pbx", "peer": "+4930555000111"})
            await until(lambda: not daemon.desk.idle, 5)
            daemon.set_policy(Policy(2, {"team": {"brightness": 30}}))
            assert daemon.settings_report()["pending"] == 2
            assert state.state["version"] == 1 and flash()["brightness"] == 10
            softphone.report({"event": "closed", "call": "c1@pbx"})  # missed: no wrap-up
            await until(lambda: state.state == {"version": 2, "state": "verified", "error": None}, 15)
            assert flash()["brightness"] == 30

            # A unit that connects again and already shows the settings is read, not written.
            written = on_flash.stat().st_mtime_ns
            verified = len([r for r in reports if r["state"] == "verified"])
            await unit.unplug()
            await until(lambda: not daemon.unit_connected.is_set(), 10)
            await unit.replug()
            await until(lambda: len([r for r in reports if r["state"] == "verified"]) > verified, 20)
            assert on_flash.stat().st_mtime_ns == written

            # One that comes back mid-call with other settings (a replacement, say) is written only
            # once the desk is idle again.
            await unit.unplug()
            await until(lambda: not daemon.unit_connected.is_set(), 10)
            on_flash.write_text(json.dumps({**flash(), "brightness": 55}))
            softphone.report({"event": "incoming", "call": "c2@pbx", "peer": "+4930555000111"})
            await until(lambda: not daemon.desk.idle, 5)
            await unit.replug()
            await until(lambda: state.state["state"] == "waiting", 20)
            assert state.state["version"] == 2 and flash()["brightness"] == 55
            softphone.report({"event": "closed", "call": "c2@pbx"})
            await until(lambda: state.state["state"] == "verified", 15)
            assert flash()["brightness"] == 30

            # A policy the desk's check would refuse, handed over anyway: the unit refuses it itself.
            no_hook = ["none", "mute", "hold", "escalate", "state", "vol_up", "vol_down"]
            daemon.set_policy(Policy(3, {"desk": {"button_map": no_hook}}))
            await until(lambda: state.state["state"] == "refused", 15)
            assert state.state == {"version": 3, "state": "refused", "error": "button_map leaves hook unmapped"}
            assert flash()["button_map"][0] == "hook" and flash()["brightness"] == 30
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await unit.stop()

    asyncio.run(asyncio.wait_for(scenario(), 90))
