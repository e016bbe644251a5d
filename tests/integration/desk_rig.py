"""A whole desk in one event loop: the simulated unit (real firmware on the MicroPython VM,
over a pty), the daemon, and real baresip lines for the agent, a customer and a supervisor.

LED checks read the firmware's own PWM duties; ``lamps()`` samples them over a window and
classifies each lamp as off, solid or moving (blink/pulse), so tests assert what a person
would see (hw/scenes.md) rather than a single frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from offhook import config
from offhook.daemon.service import Daemon
from offhook.sim.unit import SimulatedUnit
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from offhook.softphone.base import EventKind, SoftphoneEvent

SERIAL = "0ff0514d000000e2"


class Desk:
    def __init__(self, workdir: Path, key_hex: str = "", **timers: float) -> None:
        """``key_hex``: the public key provisioned in the unit's key store (for update tests)."""
        self.workdir = workdir
        self.timers = {"wrap_up_s": 2, **timers}
        self.lines: dict[str, BaresipInstance] = {}
        self.unit = SimulatedUnit(SERIAL, workdir / "flash", key_hex=key_hex)
        self.daemon: Daemon | None = None
        self.daemon_task: asyncio.Task[Any] | None = None
        self.customer: BaresipAdapter | None = None
        self.supervisor: BaresipAdapter | None = None
        self.records: list[str] = []

    async def __aenter__(self) -> Desk:
        for name in ("agent", "customer", "supervisor"):
            self.lines[name] = await asyncio.to_thread(BaresipInstance(name, self.workdir).start)
        await self.unit.start()
        self.customer = BaresipAdapter(port=self.lines["customer"].ctrl_port)
        self.supervisor = BaresipAdapter(port=self.lines["supervisor"].ctrl_port)
        for adapter in (self.customer, self.supervisor):
            await adapter.start()
            await asyncio.wait_for(adapter.connected.wait(), 5)
        await self.start_daemon()
        return self

    def config(self) -> dict[str, Any]:
        return config.validate(
            {
                "unit": {"port": str(self.unit.port_link)},
                "softphone": {
                    "baresip_ctrl": f"127.0.0.1:{self.lines['agent'].ctrl_port}",
                    "supervisor": self.lines["supervisor"].uri,
                    "consult_timeout_s": 10,
                },
                "timers": self.timers,
            }
        )

    async def start_daemon(self) -> None:
        self.daemon = Daemon(
            self.config(),
            BaresipAdapter(port=self.lines["agent"].ctrl_port),
            self.workdir / "daemon-state.json",
            recorder=lambda record: self.records.append(record.moment),
        )
        self.daemon_task = asyncio.create_task(self.daemon.run())
        await asyncio.wait_for(self.daemon.unit_connected.wait(), 10)
        await asyncio.wait_for(self.daemon.softphone.connected.wait(), 5)  # type: ignore[attr-defined]

    async def stop_daemon(self) -> None:
        assert self.daemon_task is not None
        self.daemon_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.daemon_task

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_daemon()
        for adapter in (self.customer, self.supervisor):
            if adapter is not None:
                await adapter.stop()
        await self.unit.stop()
        for line in self.lines.values():
            await asyncio.to_thread(line.stop)

    # ------------------------------------------------------------ helpers

    async def lamps(self, window_s: float = 1.1) -> dict[str, str]:
        """Each lamp over ``window_s``: "off", "solid" or "moving"; status as "solid:green" etc."""
        samples: list[dict[str, int]] = []
        end = time.monotonic() + window_s
        while time.monotonic() < end:
            samples.append(self.unit.led_map())
            await asyncio.sleep(0.02)
        out = {}
        for lamp in ("hook", "mute", "hold", "escalate"):
            values = {s[lamp] for s in samples}
            out[lamp] = "off" if values == {0} else "solid" if len(values) == 1 else "moving"
        rgb = [max(s[c] for s in samples) for c in ("status_r", "status_g", "status_b")]
        colour = {
            (1, 0, 0): "red",
            (0, 1, 0): "green",
            (0, 0, 1): "blue",
            (1, 1, 0): "yellow/amber",
            (1, 0, 1): "magenta",
            (1, 1, 1): "white",
            (0, 0, 0): "off",
        }[tuple(int(c > 0) for c in rgb)]
        status_values = {(s["status_r"], s["status_g"], s["status_b"]) for s in samples}
        out["status"] = f"{'solid' if len(status_values) == 1 else 'moving'}:{colour}"
        return out

    async def wait_lamps(self, want: dict[str, str], timeout: float = 5.0) -> float:
        """Wait until the lamps look like ``want`` (a subset); returns how long it took."""
        started = time.monotonic()
        seen: dict[str, str] = {}
        while time.monotonic() - started < timeout:
            seen = await self.lamps(0.6)
            if all(seen.get(k) == v for k, v in want.items()):
                return time.monotonic() - started
        raise AssertionError(f"lamps never showed {want}; last seen {seen}")

    async def event(self, adapter: BaresipAdapter | None, kind: EventKind, timeout: float = 5) -> SoftphoneEvent:
        assert adapter is not None
        while True:
            got = await asyncio.wait_for(adapter.events.get(), timeout)
            if got.kind is kind:
                return got

    async def customer_calls(self) -> None:
        assert self.customer is not None
        await self.customer.command("dial", self.lines["agent"].uri)

    async def answer_call(self) -> None:
        """The customer calls, the ring shows, the agent answers on the unit, the call is up."""
        await self.customer_calls()
        await self.wait_lamps({"hook": "moving"})
        await self.unit.press("hook")
        await self.event(self.customer, EventKind.ESTABLISHED)
