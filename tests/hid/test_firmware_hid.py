"""The firmware's USB HID on the MicroPython VM, through a simulated machine.USBDevice with the real
API, driven like a host enumerates and uses it. Nothing here touches real USB hardware."""

from __future__ import annotations

import os

from offhook import linkproto as L
from offhook.hidframe import CHUNK, REPORT_LINK_IN, Reassembler, fragment
from offhook.vm import MicroPythonVM
from tests.firmware import fw
from tests.hid.usbhost import EP_IN, EP_OUT, HID_ITF, UsbHost, boot_with_hid, descriptor_bytes, walk

K_HOOK, K_MUTE, K_HOLD, K_ESCALATE, K_STATE, K_VOL_UP, K_VOL_DOWN = range(7)
RING, SOLID, BLINK = 5, 1, 3  # scenes patterns (hw/scenes.md)


def _ready(mpvm: MicroPythonVM) -> UsbHost:
    host = boot_with_hid(mpvm)
    host.enumerate()
    return host


def _scene(vm: MicroPythonVM) -> list[int]:
    """Pattern per lamp: hook, mute, hold, escalate, status."""
    return [int(x) for x in vm.run("print(' '.join(str(app.scene[i * 4]) for i in range(5)))").check().split()]


def _cdc_frames(vm: MicroPythonVM) -> list[L.Frame]:
    return fw.take_frames(vm)


def test_enumeration_gives_the_documented_composite_device(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    dev = host.device
    assert (dev[8] | dev[9] << 8, dev[10] | dev[11] << 8) == (0x1209, 0x0001)  # hw/usb-ids.md
    assert dev[4:7] == bytes((0xEF, 0x02, 0x01))  # composite with IAD
    cfg = host.config
    assert cfg[2] | cfg[3] << 8 == len(cfg) and cfg[4] == 3
    interfaces = [d.raw for d in walk(cfg) if d.dtype == 4]
    assert [(i[2], i[5]) for i in interfaces] == [(0, 2), (1, 10), (HID_ITF, 3)]  # CDC, CDC data, HID
    endpoints = [d.raw for d in walk(cfg) if d.dtype == 5]
    assert [(e[2], e[3], e[4]) for e in endpoints[-2:]] == [(EP_IN, 3, 64), (EP_OUT, 3, 64)]
    hid_desc = host.hid_class_descriptor()
    assert hid_desc[6] == 0x22 and hid_desc[7] | hid_desc[8] << 8 == len(descriptor_bytes())
    assert host.report_descriptor == descriptor_bytes()  # exactly hw/hid_report_descriptor.hex
    assert host.strings[1] == "offhook" and host.strings[2] == "offhook desk unit"
    assert host.strings[3] == "0ff0514d00000001"  # the board's unique id, as in HELLO
    assert "offhook telephony" in host.strings.values()
    # HELLO (on CDC, where the link starts) names the HID capability
    hello = next(f for f in _cdc_frames(mpvm) if f.type == L.HELLO)
    assert "usb_hid" in L.decode_json(hello.payload)["caps"]
    # SET_IDLE is accepted; optional requests stall (GET_REPORT, GET_IDLE, GET_PROTOCOL: a device
    # without boot protocol need not answer them)
    assert host.control(0x21, 0x0A, 0x7D00, HID_ITF, 0) == b""
    assert host.control(0xA1, 0x02, 0, HID_ITF, 1) is None
    assert host.control(0xA1, 0x01, 0x0101, HID_ITF, 2) is None
    assert host.control(0x21, 0x55, 0, HID_ITF, 0) is None


def test_no_reports_before_set_configuration(mpvm: MicroPythonVM) -> None:
    host = boot_with_hid(mpvm)
    host.press(K_MUTE, 100)
    assert host.reports() == []  # nobody enumerated us: the press goes only to the link
    assert [b for b, _, _ in fw.events(_cdc_frames(mpvm))] == ["mute"]


def test_button_presses_give_the_right_input_reports(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    _cdc_frames(mpvm)
    host.press(K_HOOK, 100)
    assert host.reports() == [b"\x01\x01"]  # Hook Switch = off-hook requested, one report
    host.press(K_MUTE, 300)
    assert host.reports() == [b"\x01\x03", b"\x01\x01"]  # mute toggle: once set, once clear; hook kept
    host.press(K_HOLD, 500)
    assert host.reports() == [b"\x01\x05", b"\x01\x01"]  # Flash
    host.press(K_ESCALATE, 700)
    assert host.reports() == [b"\x01\x09", b"\x01\x01"]  # Redial (programmable)
    host.press(K_VOL_UP, 900)
    assert host.reports() == [b"\x03\x01", b"\x03\x00"]
    host.press(K_VOL_DOWN, 1100)
    assert host.reports() == [b"\x03\x02", b"\x03\x00"]
    host.press(K_HOOK, 1300)
    assert host.reports() == [b"\x01\x00"]  # on hook again
    host.run_to(3000)
    assert host.reports() == []  # never repeated
    # no daemon: the presses went to the softphone, not as EVENTs, and none shows "not confirmed"
    assert fw.events(_cdc_frames(mpvm)) == []
    assert mpvm.run("print(app.unit.refused, app.unit.request_seq)").check().split() == ["0", "-1"]


def test_a_long_press_is_no_hid_report(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    host.press(K_HOOK, 100, hold=1200)  # long press: an offhook gesture (reject), not Hook Switch
    assert host.reports() == []


def test_output_reports_set_the_lamps(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    assert host.set_report(b"\x02\x04") == b""  # SET_REPORT on EP0: Ring
    host.run_to(50)
    assert mpvm.run("print(app.unit.hid)").check().strip() == "4"
    assert _scene(mpvm)[:3] == [RING, 0, 0]
    assert host.out_reports([b"\x02\x03"]) == 0  # interrupt OUT: Off-Hook + Mute
    host.run_to(100)
    assert _scene(mpvm)[:3] == [SOLID, SOLID, 0]
    host.out_reports([b"\x02\x09"])  # Off-Hook + Hold
    host.run_to(150)
    assert _scene(mpvm)[:3] == [SOLID, 0, BLINK]


def test_hook_switch_follows_the_softphone(mpvm: MicroPythonVM) -> None:
    """Answered on screen: the Off-Hook LED comes on; a mute press then carries hook=1 (a stale 0 would
    hang up). Hung up on screen: a hook press asks for off-hook, not on-hook."""
    host = _ready(mpvm)
    host.set_report(b"\x02\x04")  # ringing
    host.press(K_HOOK, 100)
    assert host.reports() == [b"\x01\x01"]  # answer
    host.set_report(b"\x02\x01")  # the softphone confirms: off-hook
    host.press(K_MUTE, 300)
    assert host.reports() == [b"\x01\x03", b"\x01\x01"]
    host.set_report(b"\x02\x00")  # hung up on screen
    host.set_report(b"\x02\x04")  # next call rings
    host.press(K_HOOK, 500)
    assert host.reports() == [b"\x01\x01"]
    # the mute lamp is the softphone's Mute LED, not a guess from the press
    host.press(K_MUTE, 700)
    host.reports()
    host.run_to(900)
    assert _scene(mpvm)[1] == 0


def test_daemon_state_wins_and_suppresses_hid_inputs(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    fw_host = fw.Host(mpvm)
    fw_host.t = 10
    mpvm.run("T[0] = 10").check()
    host.set_report(b"\x02\x04")  # a softphone rings over HID
    fw_host.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_AVAILABLE))
    fw_host.run(60)
    mpvm.run("T[0] = 60").check()
    assert _scene(mpvm)[0] == 0  # the daemon's STATE (idle) wins over the HID Ring LED
    fw_host.run(200, script=[(100, K_HOOK, 0), (160, K_HOOK, 1)])
    fw_host.run(340, script=[(220, K_VOL_UP, 0), (280, K_VOL_UP, 1)])
    assert host.reports() == []  # suppressed: the daemon answers calls and sets the volume
    assert [b for b, _, _ in fw.events(fw_host.received)] == ["hook", "vol_up"]
    # the daemon's config names a HID softphone: telephony inputs go out too (volume stays with it)
    fw_host.send(L.STATE, L.encode_state(L.CALL_RINGING, L.AGENT_AVAILABLE, 0x0100))
    fw_host.run(360)
    fw_host.run(500, script=[(400, K_HOOK, 0), (460, K_HOOK, 1)])
    fw_host.run(640, script=[(520, K_VOL_UP, 0), (580, K_VOL_UP, 1)])
    assert host.reports() == [b"\x01\x01"]
    assert [b for b, _, _ in fw.events(fw_host.received)] == ["hook", "vol_up", "hook", "vol_up"]


def _link_exchange(host: UsbHost, frames: list[bytes], until: int, drop: set[int] | None = None) -> list[L.Frame]:
    """Host frames -> fragmented OUT reports (``drop``: report indexes lost); the unit's IN reports ->
    reassembled -> decoded, as offhook.transport.hid does."""
    reports, _ = fragment(b"\x00" + b"".join(frames), 0)
    reports = [r for i, r in enumerate(reports) if i not in (drop or set())]
    host.out_reports(reports)
    host.run_to(until)
    unit_reports = host.reports()
    assert all(r[0] == REPORT_LINK_IN and len(r) == 64 for r in unit_reports)
    assembler = Reassembler()
    data = b"".join(assembler.feed(r) for r in unit_reports)
    assert assembler.lost == assembler.garbled == 0
    items = L.Decoder().feed(data)
    return [i for i in items if isinstance(i, L.Frame)]


def test_vendor_reports_carry_frames_that_decode_on_the_host(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    _cdc_frames(mpvm)
    hello = L.encode_frame(L.HELLO, 0, L.encode_json({"proto": 1, "host": "test"}), L.FLAG_ACK_REQUESTED)
    got = _link_exchange(host, [hello], 50)
    types = [f.type for f in got]
    assert L.ACK in types and L.HELLO in types  # answered over HID, not CDC
    unit_hello = L.decode_json(next(f for f in got if f.type == L.HELLO).payload)
    assert unit_hello["serial"] == "0ff0514d00000001" and "usb_hid" in unit_hello["caps"]
    assert _cdc_frames(mpvm) == []
    # a maximum-size frame each way: PING with a 480-byte payload, echoed in PONG
    payload = os.urandom(L.MAX_PAYLOAD)
    ping = L.encode_frame(L.PING, 1, payload)
    assert 8 * CHUNK < len(ping) <= L.MAX_ENCODED + 1  # nine reports
    got = _link_exchange(host, [ping], 150)
    assert [f.payload for f in got if f.type == L.PONG] == [payload]


def test_a_lost_out_report_costs_one_frame(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    first = L.encode_frame(L.PING, 1, bytes(range(200)))  # 4 reports
    second = L.encode_frame(L.PING, 2, L.encode_ping(0xBEEF))
    got = _link_exchange(host, [first, second], 100, drop={1})
    assert [L.decode_ping(f.payload) for f in got if f.type == L.PONG] == [0xBEEF]
    # a garbled report (impossible count) also ends only the frame in progress
    reports, _ = fragment(b"\x00" + first, 10)
    garbled = bytes((0x11, 99)) + reports[1][2:]
    tail, _ = fragment(L.encode_frame(L.PING, 3, L.encode_ping(0xCAFE)), 14)
    host.out_reports([reports[0], garbled, *reports[2:], *tail])
    host.run_to(200)
    data = b"".join(Reassembler().feed(r) for r in host.reports())
    pongs = [f for f in L.Decoder().feed(data) if isinstance(f, L.Frame) and f.type == L.PONG]
    assert [L.decode_ping(f.payload) for f in pongs] == [0xCAFE]


def test_out_endpoint_naks_while_the_unit_is_full(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    frames = [L.encode_frame(L.PING, i, L.encode_ping(i) + bytes(200)) for i in range(4)]
    reports, _ = fragment(b"".join(frames), 0)
    naks = host.out_reports(reports)
    host.run_to(400)
    assert naks > 0  # flow control held the host back instead of dropping bytes
    data = b"".join(Reassembler().feed(r) for r in host.reports())
    pongs = [f for f in L.Decoder().feed(data) if isinstance(f, L.Frame) and f.type == L.PONG]
    assert sorted(L.decode_ping(f.payload[:4]) for f in pongs) == [0, 1, 2, 3]


def test_bus_reset_and_reenumeration(mpvm: MicroPythonVM) -> None:
    host = _ready(mpvm)
    mpvm.run("usbd.host_reset()").check()
    host.press(K_MUTE, 100)
    assert host.reports() == []  # not configured after a reset
    host.enumerate()
    host.press(K_MUTE, 300)
    assert host.reports() == [b"\x01\x02", b"\x01\x00"]


def test_configure_does_nothing_without_usbdevice(mpvm: MicroPythonVM) -> None:
    """Boards whose machine has no USBDevice (ESP32-S3 builds with a USB-Serial/JTAG console; the
    default simulated machine): configure() returns None, nothing HID is imported, CDC link only."""
    fw.load(mpvm)
    out = mpvm.run(
        "import sys, usb_setup\nprint(usb_setup.configure(), 'offhook_fw.hid' in sys.modules)\n"
        "import vm_main\napp = vm_main.create()\napp.boot(0)\nprint(app.hid)"
    ).check()
    assert out.split() == ["None", "False", "None"]


def test_simulated_usbdevice_keeps_the_real_rules(mpvm: MicroPythonVM) -> None:
    """The simulator refuses what MicroPython's USBDevice refuses, so the firmware cannot rely on more."""
    fw.load(mpvm)
    out = mpvm.run(
        """
import usbdevice
u = usbdevice.USBDevice()
print(u is usbdevice.USBDevice())
try:
    u.submit_xfer(0x83, bytearray(2))
except OSError:
    print("inactive")
u.config(u.BUILTIN_CDC.desc_dev, u.BUILTIN_CDC.desc_cfg)
u.active(True)
print(u.submit_xfer(0x83, bytearray(2)))
try:
    u.config(u.BUILTIN_CDC.desc_dev, u.BUILTIN_CDC.desc_cfg)
except OSError:
    print("busy")
"""
    ).check()
    assert out.split() == ["True", "inactive", "False", "busy"]  # unconfigured: submit_xfer is False
