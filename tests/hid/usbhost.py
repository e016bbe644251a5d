"""A simulated USB host for the firmware on the VM: enumerates the unit's composite device
through the simulated machine.USBDevice (firmware/sim/usbdevice.py) and exchanges HID reports."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from offhook.vm import MicroPythonVM
from tests.firmware import fw

REPO = Path(__file__).resolve().parents[2]
DESCRIPTOR_HEX = REPO / "hw" / "hid_report_descriptor.hex"
HID_MD = REPO / "hw" / "hid.md"
EP_IN = 0x83
EP_OUT = 0x03
HID_ITF = 2

# Before the app: the simulated USBDevice becomes machine.USBDevice, then boot.py's call.
HID_PRELUDE = """
import machine, usbdevice, binascii
machine.USBDevice = usbdevice.USBDevice
import usb_setup
hid_dev = usb_setup.configure()
usbd = machine.USBDevice()
"""

HOST_HELPERS = """
T = [0]

def ctl(setup_hex, data_hex=""):
    try:
        r = usbd.host_control(binascii.unhexlify(setup_hex), binascii.unhexlify(data_hex) if data_hex else None)
        print(binascii.hexlify(r).decode() or ".")
    except usbdevice.Stall:
        print("STALL")

_GOT = []

def _drain():
    while True:
        d = usbd.host_in(0x83)
        if d is None:
            break
        _GOT.append(binascii.hexlify(d).decode())

def poll():
    _drain()
    print(" ".join(_GOT) or "-")
    _GOT.clear()

def put_out(reports_hex):
    # Interrupt OUT reports; while the unit NAKs (buffer full) its link task runs and the host
    # keeps polling the IN endpoint, as a host controller does.
    naks = 0
    for r in reports_hex.split():
        while not usbd.host_out(0x03, binascii.unhexlify(r)):
            naks += 1
            T[0] += 1
            app.step(T[0])
            _drain()
    print(naks)

def run_to(end, script=()):
    i = 0
    for t in range(T[0], end):
        while i < len(script) and script[i][0] <= t:
            machine.set_input(_PINS[script[i][1]], script[i][2])
            i += 1
        app.step(t)
        _drain()
    T[0] = end
"""


def descriptor_bytes() -> bytes:
    return bytes.fromhex("".join(line.split("#")[0] for line in DESCRIPTOR_HEX.read_text().splitlines()))


def setup_packet(rtype: int, req: int, value: int, index: int, length: int) -> str:
    return struct.pack("<BBHHH", rtype, req, value, index, length).hex()


@dataclass
class Descriptor:
    dtype: int
    raw: bytes


def walk(cfg: bytes) -> list[Descriptor]:
    out, i = [], 0
    while i < len(cfg):
        out.append(Descriptor(cfg[i + 1], cfg[i : i + cfg[i]]))
        i += cfg[i]
    return out


@dataclass
class UsbHost:
    vm: MicroPythonVM
    device: bytes = b""
    config: bytes = b""
    report_descriptor: bytes = b""
    strings: dict[int, str] = field(default_factory=dict)

    def control(self, rtype: int, req: int, value: int, index: int, length: int, data: bytes = b"") -> bytes | None:
        """None if the device stalled."""
        out = self.vm.run(f"ctl({setup_packet(rtype, req, value, index, length)!r}, {data.hex()!r})").check().strip()
        if out == "STALL":
            return None
        return b"" if out == "." else bytes.fromhex(out)

    def _string(self, index: int) -> str:
        raw = self.control(0x80, 6, 0x0300 | index, 0x0409, 255)
        assert raw is not None and raw[1] == 3
        return raw[2:].decode("utf-16-le")

    def enumerate(self) -> None:
        """What an OS does: device and configuration descriptors, strings, SET_CONFIGURATION,
        then the HID driver: HID report descriptor and SET_IDLE(0)."""
        head = self.control(0x80, 6, 0x0100, 0, 64)
        assert head is not None and head[0] == 18
        assert self.control(0x00, 5, 7, 0, 0) == b""  # SET_ADDRESS
        self.device = self.control(0x80, 6, 0x0100, 0, 18) or b""
        short = self.control(0x80, 6, 0x0200, 0, 9) or b""
        total = short[2] | short[3] << 8
        self.config = self.control(0x80, 6, 0x0200, 0, total) or b""
        for index in (1, 2, 3):
            self.strings[index] = self._string(index)
        for d in walk(self.config):
            if d.dtype == 4 and d.raw[8]:
                self.strings[d.raw[8]] = self._string(d.raw[8])
        assert self.control(0x00, 9, 1, 0, 0) == b""  # SET_CONFIGURATION 1
        hid_desc = self.hid_class_descriptor()
        length = hid_desc[7] | hid_desc[8] << 8
        self.report_descriptor = self.control(0x81, 6, 0x2200, HID_ITF, length) or b""
        assert self.control(0x21, 0x0A, 0, HID_ITF, 0) == b""  # SET_IDLE(0): report on change only

    def hid_class_descriptor(self) -> bytes:
        return next(d.raw for d in walk(self.config) if d.dtype == 0x21)

    def set_report(self, report: bytes) -> bytes | None:
        """SET_REPORT (output) on EP0."""
        return self.control(0x21, 0x09, 0x0200 | report[0], HID_ITF, len(report), report)

    def reports(self) -> list[bytes]:
        """Every input report the unit has queued (the host polls until NAK)."""
        out = self.vm.run("poll()").check().strip()
        return [] if out == "-" else [bytes.fromhex(x) for x in out.split()]

    def out_reports(self, reports: list[bytes]) -> int:
        """Send interrupt OUT reports; returns how many times the unit NAKed (flow control)."""
        return int(self.vm.run(f"put_out({' '.join(r.hex() for r in reports)!r})").check())

    def run_to(self, end: int, script: list | None = None) -> None:
        self.vm.run(f"run_to({end}, {sorted(script or [])!r})").check()

    def press(self, input_index: int, at: int, hold: int = 60) -> None:
        """One clean press of input K(index+1): down at ``at``, up ``hold`` ms later; runs past it."""
        self.run_to(at + hold + 40, [(at, input_index, 0), (at + hold, input_index, 1)])


def boot_with_hid(vm: MicroPythonVM, config: bytes | None = None) -> UsbHost:
    fw.load(vm)
    if config is not None:
        vm.put("/config.json", config)
    vm.run(HID_PRELUDE + fw.VM_PRELUDE + HOST_HELPERS + "app = vm_main.create()\napp.boot(0)\n").check()
    return UsbHost(vm)
