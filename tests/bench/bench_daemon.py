"""Daemon latency and idle cost, with real baresip and a unit on a pseudo-terminal.

The unit here is scripted with the shared link code (tests/host/fake_unit.py), so the
figures are host-side: serial read → desk → ctrl_tcp write, and baresip event →
STATE bytes read on the unit's side of the pty. The same figures on the simulated
firmware come with the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offhook import config
from offhook import linkproto as L
from offhook.daemon.service import Daemon
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from tests.bench.figures import Figure, percentile
from tests.host.fake_unit import PtyUnit

PRESSES = 200
CALLS = 30
IDLE_S = 60


async def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        await asyncio.sleep(0.001)


async def _state_shown(unit: PtyUnit, since: int, wanted) -> float:  # type: ignore[no-untyped-def]
    """When the unit first read a STATE (after arrival index ``since``) for which ``wanted`` holds."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for at, frame in unit.arrivals[since:]:
            if frame.type == L.STATE and wanted(L.decode_state(frame.payload)):
                return at
        await asyncio.sleep(0.001)
    raise TimeoutError("the unit never showed the expected state")


async def _latencies(workdir: Path) -> tuple[list[float], list[float], list[float]]:
    agent = BaresipInstance("agent", workdir).start()
    customer_phone = BaresipInstance("customer", workdir).start()
    unit = PtyUnit()
    traces: list[tuple[str, float]] = []
    cfg = config.validate({"unit": {"port": unit.path}, "timers": {"wrap_up_s": 0}})
    daemon = Daemon(cfg, BaresipAdapter(port=agent.ctrl_port), workdir / "state.json")
    daemon.trace = lambda point, at: traces.append((point, at))
    customer = BaresipAdapter(port=customer_phone.ctrl_port)
    stop = False

    def pump() -> None:
        while not stop:
            unit.pump(0.02)

    pumping = asyncio.create_task(asyncio.to_thread(pump))
    running = asyncio.create_task(daemon.run())
    await customer.start()
    await asyncio.wait_for(customer.connected.wait(), 5)
    await asyncio.wait_for(daemon.unit_connected.wait(), 5)
    await asyncio.wait_for(daemon.softphone.connected.wait(), 5)  # type: ignore[attr-defined]
    button_to_command, button_to_led, event_to_led = [], [], []
    try:
        # Softphone event -> STATE on the unit: an incoming call, CALLS times.
        for _ in range(CALLS):
            seen = len(unit.arrivals)
            await customer.command("dial", agent.uri)
            shown_at = await _state_shown(unit, seen, lambda state: state[0] == L.CALL_RINGING)
            event_at = next(at for point, at in reversed(traces) if point == "softphone_event")
            event_to_led.append(shown_at - event_at)
            await _wait_for(lambda: bool(customer.calls))  # its CALL_RINGING may come after ours
            call_id = next(iter(customer.calls))
            await customer.hangup(call_id)
            await _wait_for(lambda: not daemon.desk.calls)
        # Answer one call, then button -> ctrl_tcp command, and button -> confirmed mute LED.
        await customer.command("dial", agent.uri)
        await _wait_for(lambda: daemon.desk.ringing is not None)
        unit.press(L.BUTTON_HOOK)
        await _wait_for(lambda: daemon.desk.active is not None)
        for i in range(PRESSES):
            traces.clear()
            seen = len(unit.arrivals)
            want_muted = i % 2 == 0
            pressed_at = time.monotonic()
            unit.press(L.BUTTON_MUTE)
            await _wait_for(lambda: any(p == "command:mute" for p, _ in traces))
            button_to_command.append(next(at for p, at in traces if p == "command:mute") - pressed_at)
            shown_at = await _state_shown(
                unit, seen, lambda state, want=want_muted: bool(state[2] & L.STATE_MUTED) == want
            )
            button_to_led.append(shown_at - pressed_at)
    finally:
        stop = True
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await customer.stop()
        await pumping
        unit.unplug()
        agent.stop()
        customer_phone.stop()
    return button_to_command, button_to_led, event_to_led


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _idle(workdir: Path) -> tuple[float, float, float, float]:
    """CPU % and RSS of `offhook daemon` idling with a unit and baresip; and of a bare interpreter."""
    agent = BaresipInstance("idle-agent", workdir).start()
    unit = PtyUnit()
    cfg = workdir / "idle.toml"
    cfg.write_text(f'[unit]\nport = "{unit.path}"\n[softphone]\nbaresip_ctrl = "127.0.0.1:{agent.ctrl_port}"\n')
    env = {**os.environ, "XDG_RUNTIME_DIR": str(workdir), "XDG_STATE_HOME": str(workdir)}
    offhook = Path(sys.executable).with_name("offhook")
    log = (workdir / "idle-daemon.log").open("w")
    daemon = subprocess.Popen([offhook, "daemon", "--config", cfg, "--api-port", "0"], env=env, stderr=log)
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        deadline = time.monotonic() + 10
        while not unit.states() and time.monotonic() < deadline:
            unit.pump(0.1)
        time.sleep(2)  # let start-up settle
        if daemon.poll() is not None or not unit.states():
            raise RuntimeError(f"the daemon did not come up: {(workdir / 'idle-daemon.log').read_text()[-500:]}")
        cpu0, bare0, t0 = _cpu_s(daemon.pid), _cpu_s(bare.pid), time.monotonic()
        end = t0 + IDLE_S
        while time.monotonic() < end:
            unit.pump(0.5)  # the unit answers as a real one would (ACKs)
        elapsed = time.monotonic() - t0
        if daemon.poll() is not None:
            raise RuntimeError(f"the daemon exited: {(workdir / 'idle-daemon.log').read_text()[-500:]}")
        cpu = 100 * (_cpu_s(daemon.pid) - cpu0) / elapsed
        bare_cpu = 100 * (_cpu_s(bare.pid) - bare0) / elapsed
        return cpu, _rss_mb(daemon.pid), bare_cpu, _rss_mb(bare.pid)
    finally:
        daemon.terminate()
        bare.kill()
        daemon.wait(5)
        bare.wait()
        unit.unplug()
        agent.stop()


def run() -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        b2c, b2l, e2l = asyncio.run(_latencies(workdir))
        cpu, rss, bare_cpu, bare_rss = _idle(workdir)
    ms = 1000
    figures = [
        Figure("daemon", "button → softphone command p50", statistics.median(b2c) * ms, "ms", "pty unit, host side"),
        Figure(
            "daemon",
            "button → softphone command p99",
            percentile(b2c, 0.99) * ms,
            "ms",
            "pty unit, host side",
            "p99 ≤ 10 ms",
            percentile(b2c, 0.99) <= 0.010,
        ),
        Figure(
            "daemon", "softphone event → STATE on unit p50", statistics.median(e2l) * ms, "ms", "baresip CALL_INCOMING"
        ),
        Figure(
            "daemon",
            "softphone event → STATE on unit p99",
            percentile(e2l, 0.99) * ms,
            "ms",
            "pty unit (sim: later)",
            "p99 ≤ 20 ms",
            percentile(e2l, 0.99) <= 0.020,
        ),
        Figure(
            "daemon", "button → confirmed mute STATE p50", statistics.median(b2l) * ms, "ms", "incl. baresip's reply"
        ),
        Figure(
            "daemon", "button → confirmed mute STATE p99", percentile(b2l, 0.99) * ms, "ms", "incl. baresip's reply"
        ),
        Figure("daemon", "idle CPU over 60 s", cpu, "%", f"bare python {bare_cpu:.2f} %", "≤ 0.5 %", cpu <= 0.5),
        Figure("daemon", "idle RSS", rss, "MB", f"bare python {bare_rss:.1f} MB", "≤ 60 MB", rss <= 60),
    ]
    return figures
