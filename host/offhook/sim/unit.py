"""One simulated desk unit: the real firmware in the MicroPython VM, reached over a pty.

The VM runs in a Node.js child (offhook/vm/unit.mjs). This side gives the unit a
pseudo-terminal whose other end the host opens with pyserial exactly like a real
unit's /dev/ttyACM port, relays the link bytes through a throttle (LINK_BYTES_PER_S,
so timings mean something), presses buttons by driving input pins, reads LEDs back
from the firmware's PWM duty values, and keeps the unit's flash in a host directory.

Power-cycle reboots the unit with the port staying put (as a reset does);
unplug removes the port and powers the unit off (USB power); replug boots it again
on a new pty. The stable path ``port_link`` (a symlink in the runtime dir) always
points at the current pty, like /dev/serial/by-id/ does for real units.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pty
import shutil
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from offhook import linkproto as L
from offhook.firmware import vm_files
from offhook.transport.discovery import sim_registry_dir
from offhook.vm import RP2040_HEAP_BYTES, VM_DIR, VMUnavailable, node_modules_present

log = logging.getLogger(__name__)

# A conservative USB CDC rate: well under full-speed USB's ~1 MB/s bulk ceiling, about what
# MicroPython code on an RP2040 consumes. Applied in both directions.
LINK_BYTES_PER_S = 128 * 1024
UNIT_RUNNER = VM_DIR / "unit.mjs"
# Physical keys K1..K7 (boards/sim.py BUTTON_PINS) and what they are labelled by default.
KEY_PINS = (2, 3, 4, 5, 6, 7, 8)
BUTTONS = ("hook", "mute", "hold", "escalate", "state", "vol_up", "vol_down")
LEDS = ("hook", "mute", "hold", "escalate", "status_r", "status_g", "status_b")


def _env_public_key() -> str | None:
    """IT's public key for simulated units' key stores: $OFFHOOK_SIM_PUBKEY (a KEY.pub from
    `offhook fleet keygen`), so `offhook flash` can update `offhook sim` units."""
    path = os.environ.get("OFFHOOK_SIM_PUBKEY")
    if not path:
        return None
    from offhook.fleet import keys

    return keys.modulus_hex(keys.load_public(Path(path)))


@dataclass
class Throttle:
    """Spreads bytes over time at ``rate`` bytes/s (a serial line's pace)."""

    rate: float
    _free_at: float = 0.0

    async def wait(self, size: int) -> None:
        now = time.monotonic()
        start = max(now, self._free_at)
        self._free_at = start + size / self.rate
        if self._free_at - now > 0.0005:
            await asyncio.sleep(self._free_at - now)


class SimulatedUnit:
    def __init__(
        self, serial: str, flash_dir: Path, rate: float = LINK_BYTES_PER_S, key_hex: str | None = None
    ) -> None:
        if len(serial) != 16 or any(c not in "0123456789abcdef" for c in serial):
            raise ValueError(f"serial must be 16 lowercase hex digits, not {serial!r}")
        self.serial = serial
        self.flash_dir = flash_dir
        self.rate = rate
        self.leds = [0] * len(LEDS)
        self.on_change: Callable[[str], None] | None = None  # "leds", "state", "log", "port"
        self.last_state: tuple[int, int, int, int] | None = None  # the host's STATE, as sniffed
        self.logs: list[str] = []
        self.powered = False
        self.plugged = False
        self.slave_path = ""
        self._process: asyncio.subprocess.Process | None = None
        self._master = -1
        self._slave = -1
        self._tasks: list[asyncio.Task[None]] = []
        self._to_unit = Throttle(rate)
        self._to_unit_order = asyncio.Lock()
        self._to_host = Throttle(rate)
        self._sniffer = L.Decoder()
        self.key_hex = key_hex  # the fleet's public key (modulus, hex) for the unit's key store
        self.held_at_boot: tuple[int, ...] = ()  # input pins held low at power-on (safe mode: K1)
        self.boots = 0
        self._reset_requested = False

    # ------------------------------------------------------------ paths

    @property
    def port_link(self) -> Path:
        return sim_registry_dir() / f"{self.serial}.tty"

    @property
    def registry_entry(self) -> Path:
        return sim_registry_dir() / f"{self.serial}.json"

    def provision(self, fresh: bool = False) -> None:
        """First install: the firmware files onto an empty flash (as `offhook fleet provision`)."""
        files = self.flash_dir / "files"
        if fresh and self.flash_dir.exists():
            shutil.rmtree(self.flash_dir)
        if files.exists():
            return
        key_hex = self.key_hex or _env_public_key()
        if key_hex:
            files.mkdir(parents=True)
            (files / "keys.json").write_text(json.dumps({"n": key_hex}))
        for device_path, source in vm_files().items():
            target = files / device_path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())

    # ------------------------------------------------------------ power and plug

    async def start(self) -> None:
        """Plug in: a pty appears and the unit boots."""
        if not node_modules_present():
            raise VMUnavailable(f"MicroPython VM package missing: run `npm ci` in {VM_DIR}")
        self.provision()
        self._open_port()
        await self._power_on()

    async def _power_on(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise VMUnavailable("Node.js not found")
        self._process = await asyncio.create_subprocess_exec(
            node,
            str(UNIT_RUNNER),
            str(self.flash_dir),
            self.serial,
            str(RP2040_HEAP_BYTES),
            ",".join(str(pin) for pin in self.held_at_boot),
            cwd=VM_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # Node's errors carry the whole minified module
        )
        assert self._process.stdout is not None
        ready = json.loads(await asyncio.wait_for(self._process.stdout.readline(), 15))
        if not ready.get("ready"):
            raise RuntimeError(f"simulated unit did not start: {ready}")
        self.powered = True
        self.boots += 1
        self._reset_requested = False
        self._tasks = [
            asyncio.create_task(self._from_unit(self._process)),
        ]
        self._notify("power")

    async def _power_off(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self._process is not None and self._process.returncode is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                await asyncio.wait_for(self._process.wait(), 3)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._process = None
        self.powered = False
        self.last_state = None  # a rebooted unit has heard from no host yet
        self._sniffer.reset()
        self.leds = [0] * len(LEDS)
        self._notify("leds")

    async def _reboot(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if code < 0:  # killed by a signal (the terminal closed, shutdown): not a board reset
            return
        if self._process is process and self.plugged:
            self._process = None
            await asyncio.sleep(0.05)
            await self._power_on()

    async def power_cycle(self, off_s: float = 0.2) -> None:
        """Reset the unit; its USB port stays (the host sees a fresh HELLO)."""
        await self._power_off()
        await asyncio.sleep(off_s)
        await self._power_on()

    async def cut_power_after(self, writes: int) -> None:
        """Simulate a power cut: flash keeps only the next ``writes`` journal entries."""
        await self._send({"cut_after": writes})

    async def unplug(self) -> None:
        """The USB cable is pulled: the port vanishes and the unit loses power."""
        await self._power_off()
        self._close_port()

    async def replug(self) -> None:
        self._open_port()
        await self._power_on()

    async def stop(self) -> None:
        await self._power_off()
        self._close_port()

    def abandon(self) -> None:
        """Let go at once, without the event loop, because the process is about to exit (its
        terminal is gone): stop the VM and remove the port's links so that nothing outlives us."""
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        for path in (self.port_link, self.registry_entry):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _open_port(self) -> None:
        self._master, self._slave = pty.openpty()
        tty.setraw(self._slave)  # bytes pass untouched, as on a CDC ACM port
        self.slave_path = os.ttyname(self._slave)
        os.set_blocking(self._master, False)
        registry = sim_registry_dir()
        registry.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileNotFoundError):
            self.port_link.unlink()
        self.port_link.symlink_to(self.slave_path)
        entry = {"path": str(self.port_link), "pty": self.slave_path, "serial": self.serial, "pid": os.getpid()}
        self.registry_entry.write_text(json.dumps(entry))
        asyncio.get_running_loop().add_reader(self._master, self._on_host_bytes)
        self.plugged = True
        self._notify("port")

    def _close_port(self) -> None:
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            for fd in (self._master, self._slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1
        for path in (self.port_link, self.registry_entry):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.plugged = False
        self._notify("port")

    # ------------------------------------------------------------ link relay

    def _on_host_bytes(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        if data:
            asyncio.get_running_loop().create_task(self._to_unit_bytes(data))

    async def _to_unit_bytes(self, data: bytes) -> None:
        # One task per read; the lock (FIFO) keeps them in the order read. Without it, a short read
        # could pass a long one whose throttle sleep was due but not yet run on a busy event loop,
        # and the unit would get the link's bytes out of order, which no serial line does.
        async with self._to_unit_order:
            for frame in self._sniffer.feed(data):
                if isinstance(frame, L.Frame) and frame.type == L.STATE:
                    with contextlib.suppress(ValueError):
                        self.last_state = L.decode_state(frame.payload)
                        self._notify("state")
            await self._to_unit.wait(len(data))
            if self.powered:
                await self._send({"link": data.hex()})

    async def _from_unit(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                self.powered = False
                self._notify("power")
                if self._process is process:
                    # The VM ended by itself: machine.reset() (SystemExit ends the Node process) or
                    # a crash. A board resets and boots again (boot.py counts the boot).
                    asyncio.get_running_loop().create_task(self._reboot(process))
                return
            message = json.loads(line)
            if "link" in message:
                data = bytes.fromhex(message["link"])
                await self._to_host.wait(len(data))
                if self._master >= 0:
                    with contextlib.suppress(OSError):
                        os.write(self._master, data)
            elif "leds" in message:
                self.leds = list(message["leds"])
                self._notify("leds")
            elif "log" in message or "crashed" in message:
                self.logs.append(str(message.get("log") or message.get("crashed")))
                self._reset_requested = "crashed" in message
                self._notify("log")
            elif "reset" in message:
                self._reset_requested = True

    async def _send(self, message: dict[str, object]) -> None:
        if self._process is None or self._process.stdin is None:
            return
        self._process.stdin.write((json.dumps(message) + "\n").encode())
        with contextlib.suppress(ConnectionError):
            await self._process.stdin.drain()

    # ------------------------------------------------------------ buttons

    async def set_key(self, button: str, down: bool) -> None:
        await self._send({"pin": KEY_PINS[BUTTONS.index(button)], "level": 0 if down else 1})

    async def press(self, button: str, hold_ms: int = 80) -> None:
        """Press and release (the firmware's gestures decide: short, long, or half a double).
        The hold is timed inside the VM on the unit's clock (sim/machine.py press_pattern), so a
        host starved of CPU cannot shorten it; this returns after about that time."""
        await self._finger(button, ((0, hold_ms), (1, 0)))

    async def double_press(self, button: str) -> None:
        await self._finger(button, ((0, 60), (1, 120), (0, 60), (1, 0)))

    async def _finger(self, button: str, steps: tuple[tuple[int, int], ...]) -> None:
        await self._send({"pin": KEY_PINS[BUTTONS.index(button)], "pattern": steps})
        await asyncio.sleep(sum(ms for _, ms in steps) / 1000)

    def led_map(self) -> dict[str, int]:
        return dict(zip(LEDS, self.leds, strict=True))

    def _notify(self, what: str) -> None:
        if self.on_change is not None:
            self.on_change(what)
