"""`offhook demo` (what `make run` starts): take a real call on a desk unit, no setup needed.

Starts three baresip lines on 127.0.0.1 (the agent's softphone, a customer and a
supervisor who answers consults after a couple of rings), the daemon with its local
API, and a simulated desk unit with its terminal UI, unless a real unit is plugged
in, in which case that one is used. In the UI, `c` makes the customer call the
agent and `x` makes the customer hang up. Ctrl-C (or q) stops everything; every
child process also dies with this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from offhook import config as config_module
from offhook.api.server import ApiServer
from offhook.api.tokens import TokenStore
from offhook.daemon.service import Daemon
from offhook.metrics.report import today
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from offhook.softphone.base import EventKind
from offhook.transport.discovery import usb_candidates

log = logging.getLogger("offhook.demo")
SUPERVISOR_ANSWERS_AFTER_S = 3.0


class Demo:
    def __init__(self, workdir: Path, api_port: int) -> None:
        self.workdir = workdir
        self.api_port = api_port
        self.lines: dict[str, BaresipInstance] = {}
        self.customer: BaresipAdapter | None = None
        self.supervisor: BaresipAdapter | None = None
        self.daemon: Daemon | None = None
        self.api: ApiServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self, unit_port: str) -> None:
        for name in ("agent", "customer", "supervisor"):
            self.lines[name] = await asyncio.to_thread(BaresipInstance(name, self.workdir).start)
        cfg = config_module.validate(
            {
                "unit": {"port": unit_port},
                "softphone": {
                    "baresip_ctrl": f"127.0.0.1:{self.lines['agent'].ctrl_port}",
                    "supervisor": self.lines["supervisor"].uri,
                    "consult_timeout_s": 20,
                },
                "timers": {"wrap_up_s": 15},
            }
        )
        # The demo's calls go to a store of its own, never into the agent's real figures.
        recorder = CallRecorder(self.workdir / "metrics.sqlite3")
        sink = MetricsSink(recorder, agent="demo")
        self.daemon = Daemon(
            cfg, BaresipAdapter(port=self.lines["agent"].ctrl_port), self.workdir / "state.json", recorder=sink
        )
        self.api = ApiServer(
            self.daemon, TokenStore(), self.api_port, figures=lambda: today(recorder.conn, agent="demo", tz=sink.tz)
        )
        with contextlib.suppress(OSError):  # the API port may be taken by an installed daemon
            await self.api.start()
        self.customer = BaresipAdapter(port=self.lines["customer"].ctrl_port)
        self.supervisor = BaresipAdapter(port=self.lines["supervisor"].ctrl_port)
        for adapter in (self.customer, self.supervisor):
            await adapter.start()
        self._tasks = [
            asyncio.create_task(self.daemon.run()),
            asyncio.create_task(self._supervisor_answers()),
        ]

    async def _supervisor_answers(self) -> None:
        assert self.supervisor is not None
        while True:
            event = await self.supervisor.events.get()
            if event.kind is EventKind.INCOMING:
                await asyncio.sleep(SUPERVISOR_ANSWERS_AFTER_S)
                with contextlib.suppress(Exception):
                    await self.supervisor.answer(event.call_id)

    async def customer_calls(self) -> str:
        assert self.customer is not None
        if self.customer.calls:
            return "the customer is already on the line"
        await self.customer.command("dial", self.lines["agent"].uri)
        return "the customer is calling the agent"

    async def customer_hangs_up(self) -> str:
        assert self.customer is not None
        for call_id in list(self.customer.calls):
            await self.customer.hangup(call_id)
            return "the customer hung up"
        return "the customer has no call"

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for adapter in (self.customer, self.supervisor):
            if adapter is not None:
                await adapter.stop()
        if self.api is not None:
            await self.api.stop()
        for line in self.lines.values():
            await asyncio.to_thread(line.stop)


async def run(api_port: int = 8677) -> int:
    from offhook.sim.tui import SimApp, exit_on_hangup
    from offhook.sim.unit import SimulatedUnit

    with tempfile.TemporaryDirectory(prefix="offhook-demo-") as tmp:
        workdir = Path(tmp)
        real = usb_candidates()
        demo = Demo(workdir, api_port)
        unit: SimulatedUnit | None = None
        try:
            if real:
                port = real[0].path
                print(f"using the desk unit on {port}; press Ctrl-C to stop")
            else:
                unit = SimulatedUnit("0ff0514d00000001", workdir / "flash")
                exit_on_hangup([unit], lambda: shutil.rmtree(workdir, True))
                await unit.start()
                port = str(unit.port_link)
            await demo.start(port)
            if unit is None:
                print("c: customer calls   x: customer hangs up   (the unit's buttons answer, mute, hold, escalate)")
                await asyncio.Event().wait()  # until Ctrl-C
                return 0
            extra: dict[str, tuple[str, Callable[[], Awaitable[str]]]] = {
                "c": ("Customer calls", demo.customer_calls),
                "x": ("Customer hangs up", demo.customer_hangs_up),
            }
            await SimApp([unit], extra_keys=extra).run_async()
            return 0
        finally:
            await demo.stop()
            if unit is not None:
                await unit.stop()
