"""`offhook sim`: the real firmware on the MicroPython VM, reached over a pty like a real unit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from offhook import linkproto as L
from offhook.daemon.unit import UnitLost, UnitSession
from offhook.transport.serial import SerialTransport

OFFHOOK = Path(sys.executable).with_name("offhook")


class Sim:
    """`offhook sim --headless` as a subprocess, with its JSON-lines control."""

    def __init__(self, count: int = 1, *extra: str) -> None:
        self.process = subprocess.Popen(
            [OFFHOOK, "sim", "--headless", "--count", str(count), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline())
        assert ready["event"] == "ready", ready
        self.units: list[dict[str, Any]] = ready["units"]

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        reply = json.loads(self.process.stdout.readline())
        assert reply["ok"], reply
        return reply

    def node_pids(self) -> list[int]:
        return node_children(self.process.pid)

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self.ask(cmd="quit")
            self.process.wait(10)


def node_children(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent), "node"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def sim() -> Iterator[Sim]:
    running = Sim()
    yield running
    running.close()


async def open_session(path: str) -> UnitSession:
    session = UnitSession(SerialTransport(path))
    await session.connect(timeout=5)
    return session


async def next_event(session: UnitSession) -> tuple[int, int]:
    while True:
        await session._pump(0.02)
        if not session.events.empty():
            event = session.events.get_nowait()
            return event.button, event.gesture


def test_buttons_give_event_frames_and_state_drives_leds(sim: Sim) -> None:
    async def scenario() -> None:
        session = await open_session(sim.units[0]["path"])
        assert session.info is not None and session.info.serial == sim.units[0]["serial"]
        assert session.info.board == "sim"
        for button, name in ((L.BUTTON_HOOK, "hook"), (L.BUTTON_MUTE, "mute"), (L.BUTTON_HOLD, "hold")):
            await asyncio.to_thread(sim.ask, cmd="press", button=name)
            assert await asyncio.wait_for(next_event(session), 3) == (button, L.GESTURE_SHORT)
        await asyncio.to_thread(sim.ask, cmd="hold", button="state", ms=1000)
        assert await asyncio.wait_for(next_event(session), 3) == (L.BUTTON_STATE, L.GESTURE_LONG)

        await session.send_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, L.STATE_MUTED, 0)
        for _ in range(20):
            await session._pump(0.02)
        leds = (await asyncio.to_thread(sim.ask, cmd="leds"))["leds"]
        assert leds["hook"] > 0 and leds["mute"] > 0  # active call lamp and muted lamp lit
        assert leds["hold"] == 0
        state = (await asyncio.to_thread(sim.ask, cmd="state"))["state"]
        assert state == {"call": "active", "agent": "on_call", "flags": ["muted"], "timer_s": 0}

        await session.send_state(L.CALL_IDLE, L.AGENT_AVAILABLE, 0, 0)
        for _ in range(20):
            await session._pump(0.02)
        leds = (await asyncio.to_thread(sim.ask, cmd="leds"))["leds"]
        assert leds["hook"] == 0 and leds["mute"] == 0
        session.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_press_is_not_lost_when_the_vm_is_starved(sim: Sim) -> None:
    """The VM gets no CPU for a while around or during a press (a loaded host): the unit still
    sees the whole press, because the simulated finger holds the key for the firmware's scans,
    not for the host's clock. (Before, a stall could swallow the press: the soak lost calls.)"""

    async def stalled_press(node: int, button: str, stall_after_s: float) -> None:
        pressing = asyncio.create_task(asyncio.to_thread(sim.ask, cmd="press", button=button))
        await asyncio.sleep(stall_after_s)
        os.kill(node, signal.SIGSTOP)
        try:
            await asyncio.sleep(0.3)
        finally:
            os.kill(node, signal.SIGCONT)
        await pressing

    async def scenario() -> None:
        session = await open_session(sim.units[0]["path"])
        node = sim.node_pids()[0]
        for stall_after_s in (0.0, 0.01, 0.03, 0.05):  # before the first scan, and mid-press
            await stalled_press(node, "mute", stall_after_s)
            assert await asyncio.wait_for(next_event(session), 3) == (L.BUTTON_MUTE, L.GESTURE_SHORT), stall_after_s
        await asyncio.to_thread(sim.ask, cmd="double", button="state")
        assert await asyncio.wait_for(next_event(session), 3) == (L.BUTTON_STATE, L.GESTURE_DOUBLE)
        session.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_power_cycle_and_unplug_replug_resynchronise(sim: Sim) -> None:
    async def scenario() -> None:
        path = sim.units[0]["path"]
        session = await open_session(path)
        running = asyncio.create_task(session.run())
        await asyncio.to_thread(sim.ask, cmd="power_cycle")
        await asyncio.wait_for(session.resync.wait(), 10)  # a fresh HELLO: the unit rebooted
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        session.close()

        session = await open_session(path)
        running = asyncio.create_task(session.run())
        await asyncio.to_thread(sim.ask, cmd="unplug")
        with pytest.raises(UnitLost):
            await asyncio.wait_for(running, 5)
        session.close()
        assert not Path(path).exists()  # the port is gone, as /dev/serial/by-id/... would be

        await asyncio.to_thread(sim.ask, cmd="replug")
        session = await open_session(path)  # same stable path, fresh HELLO
        assert session.info is not None and session.info.serial == sim.units[0]["serial"]
        session.close()

    asyncio.run(asyncio.wait_for(scenario(), 40))


def test_bad_requests_are_answered_not_fatal(sim: Sim) -> None:
    assert sim.process.stdin and sim.process.stdout
    for bad in ('{"cmd": "press", "button": "nope"}', '{"cmd": "teleport"}', "[1]", '{"cmd": "leds", "unit": 9}'):
        sim.process.stdin.write(bad + "\n")
        reply = json.loads(sim.process.stdout.readline())
        assert reply["ok"] is False and reply["error"]
    assert sim.ask(cmd="leds")["ok"]


@pytest.mark.parametrize("how", ["quit", "sigterm", "sigkill"])
def test_no_orphan_processes(how: str) -> None:
    sim = Sim(2)
    pids = sim.node_pids()
    assert len(pids) == 2
    registry = [Path(unit["path"]).with_suffix(".json") for unit in sim.units]
    if how == "quit":
        sim.close()
    elif how == "sigterm":
        sim.process.send_signal(signal.SIGTERM)
        sim.process.wait(10)
    else:
        sim.process.send_signal(signal.SIGKILL)
        sim.process.wait(10)
    assert wait_gone(pids), f"node processes left after {how}"
    if how != "sigkill":  # after SIGKILL nobody can clean up; discovery ignores dead entries
        assert not any(path.exists() for path in registry)


def test_flash_survives_power_cycle_and_power_cut_drops_later_writes(tmp_path: Path) -> None:
    sim = Sim(1, "--flash", str(tmp_path))
    try:

        async def scenario() -> None:
            session = await open_session(sim.units[0]["path"])
            await session.send(L.CONFIG_SET, L.encode_json({"brightness": 40}))
            for _ in range(25):
                await session._pump(0.02)
            session.close()

        asyncio.run(asyncio.wait_for(scenario(), 20))
        config_file = tmp_path / sim.units[0]["serial"] / "files" / "config.json"
        assert json.loads(config_file.read_text())["brightness"] == 40
        journal = (tmp_path / sim.units[0]["serial"] / "journal.jsonl").read_text().splitlines()
        assert any(json.loads(line)["op"] == "rename" for line in journal)  # atomic write: temp + rename

        sim.ask(cmd="cut_power_after", writes=0)

        async def change_again() -> None:
            session = await open_session(sim.units[0]["path"])
            await session.send(L.CONFIG_SET, L.encode_json({"brightness": 90}))
            for _ in range(25):
                await session._pump(0.02)
            session.close()

        asyncio.run(asyncio.wait_for(change_again(), 20))
        sim.ask(cmd="power_cycle")
        assert json.loads(config_file.read_text())["brightness"] == 40  # the cut dropped the write
    finally:
        sim.close()


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make test")
def test_tui_closed_terminal_leaves_no_process(tmp_path: Path) -> None:
    """Killing the terminal (SIGHUP, as when an SSH session drops) stops the sim and its VM, and
    removes its port link and temporary flash."""
    session_name = f"offhook-hup-{os.getpid()}"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = f"XDG_RUNTIME_DIR={tmp_path} TMPDIR={scratch}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session_name, f"{env} {OFFHOOK} sim"], check=True)
    try:
        link = tmp_path / "offhook" / "sim" / "0ff0514d00000001.tty"
        deadline = time.monotonic() + 15
        while not link.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        pane_pid = int(
            subprocess.run(
                ["tmux", "list-panes", "-t", session_name, "-F", "#{pane_pid}"], capture_output=True, text=True
            ).stdout.split()[0]
        )
        sim_pids = [pane_pid, *node_children(pane_pid)]
        assert len(sim_pids) == 2
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session_name], capture_output=True)
    assert wait_gone(sim_pids, 10), "the simulator or its VM outlived the terminal"
    assert not link.exists()
    assert not list(scratch.iterdir())  # the temporary flash went with it


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make test")
def test_tui_in_tmux_shows_led_changes_after_key_presses(tmp_path: Path) -> None:
    session_name = f"offhook-sim-{os.getpid()}"
    env = f"XDG_RUNTIME_DIR={tmp_path}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session_name, "-x", "110", "-y", "34", f"{env} {OFFHOOK} sim"], check=True
    )
    try:
        link = tmp_path / "offhook" / "sim" / "0ff0514d00000001.tty"
        deadline = time.monotonic() + 15
        while not link.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

        def screen() -> str:
            return subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session_name], capture_output=True, text=True
            ).stdout

        def hook_lamp() -> int:
            """The hook lamp's brightness in % as drawn on the TUI."""
            line = next(line for line in screen().splitlines() if "Answer/Hang up" in line)
            return int(line.split("[h]")[0].strip("│ ○●%"))

        async def samples(session: UnitSession, enough, limit_s: float = 8.0) -> list[int]:  # type: ignore[no-untyped-def]
            """Sample the drawn lamp until ``enough(samples)`` holds (or the time limit: a loaded CI)."""
            seen: list[int] = []
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline and not enough(seen):
                await session._pump(0.05)
                seen.append(hook_lamp())
            return seen

        async def scenario() -> None:
            session = await open_session(str(link))
            await session.send_state(L.CALL_RINGING, L.AGENT_AVAILABLE, 0, 0)
            ringing = await samples(session, lambda seen: len(seen) >= 30 and min(seen) == 0 and max(seen) > 0)
            assert "call ringing" in screen(), screen()
            assert min(ringing) == 0 and max(ringing) > 0, ringing  # the ring pattern flashes, drawn live from PWM
            subprocess.run(["tmux", "send-keys", "-t", session_name, "h"], check=True)
            assert await asyncio.wait_for(next_event(session), 5) == (L.BUTTON_HOOK, L.GESTURE_SHORT)
            await session.send_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, 0, 0)
            steady = await samples(session, lambda seen: len(seen) >= 10 and len(set(seen[-10:])) == 1 and seen[-1] > 0)
            active = steady[-10:]
            assert len(set(active)) == 1 and active[0] > 0, steady  # active call: the hook lamp solid
            assert "call active" in screen() and "press hook" in screen(), screen()
            session.close()

        asyncio.run(asyncio.wait_for(scenario(), 60))
        subprocess.run(["tmux", "send-keys", "-t", session_name, "q"], check=True)
        time.sleep(1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session_name], capture_output=True)
