"""Render the simulator's TUI on a live simulated unit into docs/img/sim-tui.svg.

Run from the repository root: .venv/bin/python scripts/screenshot_sim.py
A host session puts the unit in an active, muted call so the picture shows lit lamps.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from offhook import linkproto as L
from offhook.daemon.unit import UnitSession
from offhook.sim.tui import SimApp
from offhook.sim.unit import SimulatedUnit
from offhook.transport.serial import SerialTransport


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        unit = SimulatedUnit("0ff0514d00000001", Path(tmp) / "flash")
        await unit.start()
        session = UnitSession(SerialTransport(str(unit.port_link)))
        await session.connect()
        app = SimApp([unit])
        async with app.run_test(size=(104, 32)) as pilot:
            await session.send_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, L.STATE_MUTED, 0)
            for _ in range(20):
                await session._pump(0.02)
            await pilot.press("o")  # the agent presses hold; the log shows it
            await pilot.pause(0.3)
            await session.send_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, L.STATE_MUTED, 0)
            await pilot.pause(0.5)
            app.save_screenshot(str(out))
        session.close()
        await unit.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/sim-tui.svg")
    asyncio.run(main(target))
    print(f"wrote {target}")
