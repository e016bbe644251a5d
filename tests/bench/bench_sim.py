"""The simulated unit (real firmware, MicroPython VM, pty) with the host: start-up, round trips,
resynchronisation after unplug/replug and a daemon restart, softphone event → LED."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from offhook import linkproto as L
from offhook.daemon.unit import UnitSession
from offhook.sim.unit import SimulatedUnit
from offhook.transport.serial import SerialTransport
from tests.bench.figures import Figure, percentile
from tests.integration.desk_rig import Desk

STARTS = 5
ROUND_TRIPS = 100
CALLS = 15


async def _lit(unit: SimulatedUnit, lamp: str, lit: bool, timeout: float = 3.0) -> float:
    """When the lamp's PWM duty (as the firmware wrote it) is first on/off."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (unit.led_map()[lamp] > 0) == lit:
            return time.monotonic()
        await asyncio.sleep(0.0005)
    raise TimeoutError(f"{lamp} never became {'lit' if lit else 'dark'}")


async def _startup_and_round_trips(workdir: Path) -> tuple[list[float], list[float]]:
    starts, trips = [], []
    for i in range(STARTS):
        unit = SimulatedUnit(f"0ff0514d0000b0{i:02x}", workdir / f"s{i}")
        unit.provision()
        begun = time.monotonic()
        await unit.start()
        session = UnitSession(SerialTransport(str(unit.port_link)))
        await session.connect(timeout=10)
        starts.append(time.monotonic() - begun)
        if i == 0:
            running = asyncio.create_task(session.run())
            for n in range(ROUND_TRIPS):
                muted = n % 2 == 0
                sent = time.monotonic()
                await session.send_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, L.STATE_MUTED if muted else 0, 0)
                trips.append(await _lit(unit, "mute", muted) - sent)
            running.cancel()
        session.close()
        await unit.stop()
    return starts, trips


async def _desk(workdir: Path) -> tuple[list[float], float, float]:
    event_to_led = []
    async with Desk(workdir) as desk:
        assert desk.daemon is not None and desk.customer is not None
        traces: list[tuple[str, float]] = []
        desk.daemon.trace = lambda point, at: traces.append((point, at))
        for _ in range(CALLS):
            traces.clear()
            await desk.customer_calls()
            lit = await _lit(desk.unit, "hook", True)
            event_at = next(at for point, at in traces if point == "softphone_event")
            event_to_led.append(lit - event_at)
            while not desk.customer.calls:
                await asyncio.sleep(0.01)
            await desk.customer.hangup(next(iter(desk.customer.calls)))
            while desk.daemon.desk.calls:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
        # Mid-call resynchronisation: the mute lamp must be lit again (the truth: muted call).
        await desk.customer_calls()
        await _lit(desk.unit, "hook", True)
        await desk.unit.press("hook")
        while desk.daemon.desk.active is None:
            await asyncio.sleep(0.01)
        await desk.unit.press("mute")
        await _lit(desk.unit, "mute", True)
        await desk.unit.unplug()
        await desk.unit.replug()
        replugged = time.monotonic()
        # The firmware boots dark ("no host") until the daemon's STATE arrives.
        replug_s = await _lit(desk.unit, "mute", True, timeout=10) - replugged
        await desk.stop_daemon()
        await desk.unit.power_cycle()  # so the unit shows "no host" until the new daemon speaks
        await _lit(desk.unit, "mute", False)
        restarted = time.monotonic()
        await desk.start_daemon()
        restart_s = await _lit(desk.unit, "mute", True, timeout=10) - restarted
    return event_to_led, replug_s, restart_s


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        starts, trips = asyncio.run(_startup_and_round_trips(Path(tmp)))
        event_to_led, replug_s, restart_s = asyncio.run(_desk(Path(tmp) / "desk"))
    ms = 1000
    return [
        Figure("sim", "start-up to HELLO (median of 5)", statistics.median(starts), "s", "Node + VM + firmware boot"),
        Figure("sim", "STATE sent → LED changed p50", statistics.median(trips) * ms, "ms", "LED frame period 20 ms"),
        Figure("sim", "STATE sent → LED changed p99", percentile(trips, 0.99) * ms, "ms", "LED frame period 20 ms"),
        Figure(
            "daemon",
            "softphone event → LED on simulated unit p50",
            statistics.median(event_to_led) * ms,
            "ms",
            "real firmware",
        ),
        Figure(
            "daemon",
            "softphone event → LED on simulated unit p99",
            percentile(event_to_led, 0.99) * ms,
            "ms",
            "real firmware",
            "p99 ≤ 20 ms",
            percentile(event_to_led, 0.99) <= 0.020,
        ),
        Figure("daemon", "replug mid-call → true LEDs", replug_s, "s", "incl. VM boot", "≤ 1 s after link up"),
        Figure(
            "daemon",
            "daemon restart mid-call → true LEDs",
            restart_s,
            "s",
            "incl. daemon start-up",
            "≤ 1 s",
            restart_s <= 1.0,
        ),
    ]
