"""The simulator's terminal UI (textual): the unit drawn live, keys press its buttons.

Terminals send no key release, so each button has three bindings: its letter is a
short press, Shift+letter a long press, and a digit a double press. LEDs are drawn
from the firmware's own PWM duty values (not from host state); the call and agent
state come from the STATE frames the host sent, as seen on the link.
Works over SSH and in tmux (no mouse needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, RichLog, Static

from offhook import linkproto as L
from offhook.sim.unit import BUTTONS, SimulatedUnit

# button → (short key, long key, double key, label)
KEYS = {
    "hook": ("h", "H", "1", "Answer/Hang up"),
    "mute": ("m", "M", "2", "Mute"),
    "hold": ("o", "O", "3", "Hold"),
    "escalate": ("e", "E", "4", "Supervisor"),
    "state": ("s", "S", "5", "Agent state"),
    "vol_up": ("plus", "asterisk", "6", "Vol +"),
    "vol_down": ("minus", "underscore", "7", "Vol −"),
}
LED_COLOURS = {"hook": (40, 220, 80), "mute": (240, 40, 40), "hold": (255, 170, 0), "escalate": (60, 120, 255)}
LONG_MS = 1000
KEY_LABELS = {"plus": "+", "asterisk": "*", "minus": "-", "underscore": "_"}


def lamp(duty: int, rgb: tuple[int, int, int]) -> Text:
    """A lamp glyph whose brightness follows the PWM duty (already gamma-corrected by the firmware)."""
    if not duty:
        return Text("○   0%", style="rgb(110,110,110)")  # a dark lamp, still visible on screen
    level = (duty / 65535) ** (1 / 2.2)  # back to perceived brightness for the screen
    r, g, b = (int(60 + (c - 60) * level) for c in rgb)
    return Text(f"● {round(100 * duty / 65535):3d}%", style=f"bold rgb({r},{g},{b})")


class UnitView(Static):
    def __init__(self, unit: SimulatedUnit) -> None:
        super().__init__()
        self.unit = unit
        self.state_since = time.monotonic()
        self._last_state: tuple[int, int, int, int] | None = None

    def render(self) -> Text:
        unit = self.unit
        leds = unit.led_map()
        text = Text()
        power = "on" if unit.powered else "off"
        port = str(unit.port_link) if unit.plugged else "unplugged"
        text.append(f"unit {unit.serial}   power {power}   port {port}\n", style="bold")
        for name, (short, long_, double, label) in KEYS.items():
            if name in LED_COLOURS:
                text.append_text(lamp(leds[name], LED_COLOURS[name]))
            else:
                text.append(" " * 6)
            keys = [KEY_LABELS.get(key, key) for key in (short, long_, double)]
            text.append(f"  [{keys[0]}] {label:<15} long [{keys[1]}]  double [{keys[2]}]\n")
        r, g, b = leds["status_r"], leds["status_g"], leds["status_b"]
        status = tuple(int(255 * (d / 65535) ** (1 / 2.2)) for d in (r, g, b))
        text.append("\nstatus ")
        text.append("●" if (r or g or b) else "○", style=f"bold rgb({status[0]},{status[1]},{status[2]})")
        text.append(f"  R {round(100 * r / 65535)}% G {round(100 * g / 65535)}% B {round(100 * b / 65535)}%\n\n")
        state = unit.last_state
        if state != self._last_state:
            self._last_state = state
            self.state_since = time.monotonic()
        if state is None:
            text.append("no host has sent a state yet", style="italic")
        else:
            call, agent, flags, timer = state
            names = ", ".join(name for bit, name in L.STATE_FLAG_NAMES if flags & bit) or "—"
            since = int(time.monotonic() - self.state_since)
            text.append(
                f"call {L.CALL_NAMES[call]}   agent {L.AGENT_NAMES[agent]}   for {since // 60}:{since % 60:02d}"
            )
            if agent == L.AGENT_WRAP_UP:
                text.append(f"   wrap-up left {timer} s")
            text.append(f"\nflags {names}")
        return text


class SimApp(App[int]):
    TITLE = "offhook simulated desk unit"
    CSS = """
    #unit { height: auto; }
    UnitView { height: auto; padding: 0 2; border: round $accent; }
    RichLog { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("p", "power_cycle", "Power-cycle"),
        Binding("u", "plug", "Unplug/replug"),
        Binding("tab", "next_unit", "Next unit", show=False),
    ]

    def __init__(
        self, units: list[SimulatedUnit], extra_keys: dict[str, tuple[str, Callable[[], Awaitable[str]]]] | None = None
    ) -> None:
        """``extra_keys``: key → (label, coroutine returning a line for the log), e.g. the demo's customer."""
        super().__init__()
        self.units = units
        self.extra_keys = extra_keys or {}
        self._logged_state: tuple[int, ...] | None = None
        self.current = 0
        self.view = UnitView(units[0])
        for unit in units:
            unit.on_change = self._changed

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical():
            with Horizontal(id="unit"):
                yield self.view
            yield RichLog(id="log", max_lines=500, wrap=True)
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(0.1, self.view.refresh)
        self.log_line(f"{len(self.units)} unit(s); open {self.units[0].port_link} like a real unit's serial port")
        for key, (label, _) in self.extra_keys.items():
            self.log_line(f"[{key}] {label}")

    def log_line(self, line: str) -> None:
        self.query_one(RichLog).write(f"{time.strftime('%H:%M:%S')} {line}")

    def _changed(self, what: str) -> None:
        unit = self.units[self.current]
        if what == "log" and unit.logs:
            self.log_line(f"unit: {unit.logs[-1].rstrip()}")
        elif what == "state" and unit.last_state is not None and unit.last_state[:3] != self._logged_state:
            self._logged_state = unit.last_state[:3]  # the wrap-up countdown alone is not news
            call, agent, flags, _ = unit.last_state
            self.log_line(f"host STATE: call {L.CALL_NAMES[call]}, agent {L.AGENT_NAMES[agent]}, flags {flags:#06x}")

    async def on_key(self, event: events.Key) -> None:
        if event.character in self.extra_keys:
            label, action = self.extra_keys[event.character]
            event.stop()
            try:
                self.log_line(await action())
            except Exception as exc:  # a demo helper failing must not take the UI down
                self.log_line(f"{label}: {exc}")
            return
        for button, (short, long_, double, _) in KEYS.items():
            if event.key in (short, long_, double) or event.character in (short, long_, double):
                unit = self.units[self.current]
                if event.key == short or event.character == short:
                    self.log_line(f"press {button}")
                    asyncio.get_running_loop().create_task(unit.press(button))
                elif event.key == long_ or event.character == long_:
                    self.log_line(f"long press {button}")
                    asyncio.get_running_loop().create_task(unit.press(button, LONG_MS))
                else:
                    self.log_line(f"double press {button}")
                    asyncio.get_running_loop().create_task(unit.double_press(button))
                event.stop()
                return

    async def action_power_cycle(self) -> None:
        self.log_line("power-cycle")
        await self.units[self.current].power_cycle()

    async def action_plug(self) -> None:
        unit = self.units[self.current]
        if unit.plugged:
            self.log_line("unplugged")
            await unit.unplug()
        else:
            await unit.replug()
            self.log_line(f"plugged in again on {unit.slave_path}")

    def action_next_unit(self) -> None:
        self.current = (self.current + 1) % len(self.units)
        self.view.unit = self.units[self.current]
        self.view.refresh()


def exit_on_hangup(units: list[SimulatedUnit], release: Callable[[], None] | None = None) -> None:
    """When the terminal closes (an SSH session drops, a tmux pane is killed), leave at once.

    No graceful shutdown: textual's output thread dies on the dead terminal's EIO, and the
    app's shutdown then waits forever on that thread's full queue (seen under tmux). A plain
    signal handler runs even while the main thread waits on that queue's lock. The units'
    VMs and port links go first, then ``release`` (e.g. a temporary flash directory).
    """

    def hang_up(signum: int, _frame: object) -> None:
        for unit in units:
            unit.abandon()
        if release is not None:
            with contextlib.suppress(Exception):
                release()
        os._exit(128 + signum)

    signal.signal(signal.SIGHUP, hang_up)


async def run(units: list[SimulatedUnit], on_hangup: Callable[[], None] | None = None) -> int:
    exit_on_hangup(units, on_hangup)
    for unit in units:
        await unit.start()
    assert set(KEYS) == set(BUTTONS)
    await SimApp(units).run_async()
    return 0
