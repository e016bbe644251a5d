"""`offhook daemon` as a real process with the simulated unit and baresip: sleep/resume and crashes.

Sleep is simulated as the issue asks: the daemon is SIGSTOPped (a PC asleep), the unit is
unplugged and replugged meanwhile (the transport breaks), monotonic time moves on, SIGCONT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offhook.procutil import child_preexec
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from tests.integration.test_sim import Sim

OFFHOOK = Path(sys.executable).with_name("offhook")


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.agent = BaresipInstance("agent", tmp_path).start()
        self.customer = BaresipInstance("customer", tmp_path).start()
        self.sim = Sim()
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f'[unit]\nport = "{self.sim.units[0]["path"]}"\n'
            f'[softphone]\nbaresip_ctrl = "127.0.0.1:{self.agent.ctrl_port}"\n'
        )
        self.log = tmp_path / "daemon.log"
        self.daemon: subprocess.Popen[bytes] | None = None

    def start_daemon(self) -> None:
        env = {**os.environ, "XDG_STATE_HOME": str(self.tmp / "state"), "OFFHOOK_DATA_DIR": str(self.tmp / "data")}
        with self.log.open("ab") as log:
            port_option = [] if "[api]" in self.config.read_text() else ["--api-port", "0"]
            self.daemon = subprocess.Popen(
                [OFFHOOK, "daemon", "--config", str(self.config), *port_option, "-v"],
                env=env,
                stderr=log,
                preexec_fn=child_preexec(),  # a killed test run leaves no daemon behind
            )

    def state(self) -> dict[str, Any] | None:
        return self.sim.ask(cmd="state")["state"]

    def wait(self, wanted: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = self.state()
            if state is not None and wanted(state):
                return state
            time.sleep(0.05)
        raise AssertionError(f"unit never showed the wanted state; last {state}\n{self.log.read_text()[-4000:]}")

    def close(self) -> None:
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait()
        self.sim.close()
        self.agent.stop()
        self.customer.stop()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    rig = Setup(tmp_path)
    yield rig
    rig.close()


def customer_call(setup: Setup) -> None:
    """The customer dials the agent (through a short-lived ctrl_tcp connection)."""

    async def dial() -> None:
        adapter = BaresipAdapter(port=setup.customer.ctrl_port)
        await adapter.start()
        await asyncio.wait_for(adapter.connected.wait(), 5)
        await adapter.command("dial", setup.agent.uri)
        await adapter.stop()

    asyncio.run(dial())


def customer_calls(setup: Setup) -> int:
    """How many calls the customer's baresip has (listcalls, through a short-lived connection)."""

    async def count() -> int:
        adapter = BaresipAdapter(port=setup.customer.ctrl_port)
        await adapter.start()
        await asyncio.wait_for(adapter.connected.wait(), 5)
        calls = await adapter.refresh()
        await adapter.stop()
        return sum(1 for call in calls if call.state.value == "established")

    return asyncio.run(count())


def answered_call(setup: Setup) -> None:
    setup.start_daemon()
    setup.wait(lambda s: s["agent"] == "available")
    customer_call(setup)
    setup.wait(lambda s: s["call"] == "ringing")
    setup.sim.ask(cmd="press", button="hook")
    setup.wait(lambda s: s["call"] == "active" and s["agent"] == "on_call")


def test_sleep_and_resume_end_in_the_same_resync(setup: Setup) -> None:
    answered_call(setup)
    setup.sim.ask(cmd="press", button="mute")
    setup.wait(lambda s: "muted" in s["flags"])
    assert setup.daemon is not None
    setup.daemon.send_signal(signal.SIGSTOP)  # the PC sleeps
    setup.sim.ask(cmd="unplug")  # the USB link drops meanwhile
    setup.sim.ask(cmd="replug")
    time.sleep(2.0)  # monotonic time moves on while the daemon is stopped
    before = setup.state()
    assert before is None  # the replugged unit has heard from no host yet
    setup.daemon.send_signal(signal.SIGCONT)  # the PC wakes up
    state = setup.wait(lambda s: s["call"] == "active")
    assert "muted" in state["flags"]  # the truth again: the call is still muted
    leds = setup.sim.ask(cmd="leds")["leds"]
    assert leds["hook"] > 0 and leds["mute"] > 0
    assert customer_calls(setup) == 1  # nobody hung up on the customer


def test_daemon_killed_mid_call_and_restarted(setup: Setup) -> None:
    answered_call(setup)
    assert setup.daemon is not None
    setup.daemon.send_signal(signal.SIGKILL)
    setup.daemon.wait()
    setup.start_daemon()
    # The unit shows the old daemon's last STATE until the new one speaks: wait for the new link.
    deadline = time.monotonic() + 10
    while setup.log.read_text().count("(sim, firmware") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    # The new daemon's STATE: the call found again. It was established while the old daemon
    # watched and never toggled, so it is known un-muted: no "unconfirmed" blink.
    state = setup.wait(lambda s: s["call"] == "active" and s["agent"] == "on_call")
    assert "mute_unconfirmed" not in state["flags"] and "muted" not in state["flags"]
    assert customer_calls(setup) == 1
    # The call goes on under its own SIP Call-ID: hanging up completes the one record.
    setup.sim.ask(cmd="press", button="hook")
    setup.wait(lambda s: s["agent"] == "wrap_up")
    with sqlite3.connect(setup.tmp / "data" / "metrics.sqlite3") as db:
        rows = db.execute("SELECT call_id, answer_mono, end_mono FROM calls").fetchall()
    assert len(rows) == 1, rows  # never duplicated by the restart
    call_id, answered, ended = rows[0]
    assert not call_id.startswith("line:") and answered is not None and ended is not None


def test_bad_config_is_a_clear_error_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[timers]\nwrap_up_s = 'soon'\n")
    result = subprocess.run([OFFHOOK, "daemon", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == f"offhook: error: {config}: timers.wrap_up_s must be a number, not str 'soon'"


def test_the_daemon_opens_its_channel_to_the_audio_pipeline(setup: Setup) -> None:
    """`offhook daemon` binds its end of the two-way audio channel (call events out, figures back)."""
    channel = Path(os.environ["XDG_RUNTIME_DIR"]) / "offhook-daemon.sock"
    setup.start_daemon()
    deadline = time.monotonic() + 10
    while not channel.is_socket() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert channel.is_socket(), setup.log.read_text()[-2000:]
