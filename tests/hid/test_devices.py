"""`offhook devices` lists units reachable over USB HID, and a unit on both its CDC serial port and
its HID interface once (matched by USB serial number). Fakes sit only at the OS enumeration
boundaries: hidapi (tests/hid/test_transport.py's FakeHid) and pyserial's port list; the serial
unit is the scripted unit on a real pseudo-terminal."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from offhook import linkproto as L
from offhook.cli import main
from offhook.hidframe import REPORT_LINK_OUT, Reassembler
from offhook.transport.discovery import Candidate, candidates, merge_hid
from tests.hid.test_transport import PATH, FakeDevice, FakeHid
from tests.host.fake_unit import PtyUnit

BOTH = "0ff0514d00000001"  # on a serial port and over HID
HID_ONLY = "0ff0514d00000002"
HID_ONLY_PATH = "/dev/hidraw8"


def _port(device: str, serial: str, vid: int = 0x1209, pid: int = 0x0001) -> ListPortInfo:
    port = ListPortInfo(device, skip_link_detection=True)
    port.vid, port.pid, port.serial_number = vid, pid, serial
    port.description = "offhook desk unit"
    return port


def _plug(hid: FakeHid, path: str, serial: str) -> FakeDevice:
    dev = hid.plug(path)
    for info in hid.infos:
        if info["path"] == path.encode():
            info["serial_number"] = serial
    return dev


def test_a_unit_on_both_transports_is_one_candidate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hid = FakeHid()
    _plug(hid, PATH, BOTH)
    _plug(hid, HID_ONLY_PATH, HID_ONLY)
    ports = [_port("/dev/ttyACM0", BOTH.upper()), _port("/dev/ttyACM1", "e6614c311b7a8e2f", 0x2E8A, 0x0005)]
    monkeypatch.setattr(list_ports, "comports", lambda: ports)
    found = candidates(tmp_path, hid=True, hid_module=hid)
    assert [(c.path, c.kind, c.serial.lower(), c.hid_path, c.transport) for c in found] == [
        ("/dev/ttyACM0", "usb", BOTH, PATH, "serial+hid"),  # serial numbers match whatever their case
        ("/dev/ttyACM1", "usb", "e6614c311b7a8e2f", "", "serial"),  # stock MicroPython: no HID
        (HID_ONLY_PATH, "hid", HID_ONLY, "", "hid"),
    ]
    # the daemon and `offhook flash` open every candidate as a serial port: they get no HID rows
    assert [c.transport for c in candidates(tmp_path)] == ["serial", "serial"]


def test_units_without_a_serial_number_are_never_joined() -> None:
    serial = Candidate("/dev/ttyACM0", "usb", "", "", True)
    hid = Candidate(PATH, "hid", "", "", True)
    assert merge_hid([serial], [hid]) == [serial, hid]


def test_offhook_devices_json_carries_the_transports(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hid = FakeHid()
    twin = _plug(hid, PATH, BOTH)  # the serial unit's HID interface: asked over serial, not over HID
    dev = _plug(hid, HID_ONLY_PATH, HID_ONLY)
    _answer_hello_over_hid(dev, HID_ONLY)
    monkeypatch.setitem(sys.modules, "hid", hid)  # what `import hid` (hidapi) gives
    unit = PtyUnit(serial=BOTH)
    monkeypatch.setattr(list_ports, "comports", lambda: [_port(unit.path, BOTH)])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            unit.pump(0.05)

    pumping = threading.Thread(target=serve, daemon=True)
    pumping.start()
    try:
        assert main(["devices", "--json"]) == 0
    finally:
        stop.set()
        pumping.join(2)
        unit.unplug()
    rows = json.loads(capsys.readouterr().out)
    got = {(r["serial"], r["transport"], r["path"], r["hid_path"], r["board"], r["fw"], r["error"]) for r in rows}
    assert got == {
        (BOTH, "serial+hid", unit.path, PATH, "pico", "0.1.0", ""),
        (HID_ONLY, "hid", HID_ONLY_PATH, "", "pico", "0.1.0", ""),
    }
    assert [f.type for f in unit.frames if f.type == L.HELLO] == [L.HELLO]  # the serial unit was asked once
    assert twin.written == []  # ... over its serial port only


def _answer_hello_over_hid(dev: FakeDevice, serial: str) -> None:
    """The HID-only unit's end of the link: answers HELLO in vendor reports (as tests/hid's session test)."""
    link = L.Link()
    assembler = Reassembler(REPORT_LINK_OUT)
    out_seq = [0]

    def on_write(report: bytes) -> None:
        for item in link.receive(assembler.feed(report), 0):
            if isinstance(item, L.Frame) and item.type == L.HELLO:
                hello = {"proto": 1, "fw": "0.1.0", "board": "pico", "serial": serial, "caps": ["usb_hid"]}
                link.send(L.HELLO, L.encode_json(hello), 0)
        out = link.take_output()
        if out:
            out_seq[0] = dev.unit_sends(out, out_seq[0])

    dev.on_write = on_write
