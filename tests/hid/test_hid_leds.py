"""HID_LEDS: the firmware on the VM tells the daemon what a HID softphone set on the LED output
report, through the simulated machine.USBDevice (a host's SET_REPORT) and the CDC link, decoded by
the host's own linkproto. An older daemon's NACK stops it for the session, without retries."""

from __future__ import annotations

import types

from offhook import linkproto as L
from offhook.firmware import LINKPROTO_SOURCE
from offhook.vm import MicroPythonVM
from tests.firmware import fw
from tests.hid.usbhost import UsbHost, boot_with_hid

RING, OFF_HOOK, MUTE = L.HID_LED_RING, L.HID_LED_OFF_HOOK, L.HID_LED_MUTE


def _ready(mpvm: MicroPythonVM, link: L.Link | None = None) -> tuple[UsbHost, fw.Host]:
    usb = boot_with_hid(mpvm)
    usb.enumerate()
    daemon = fw.Host(mpvm)
    if link is not None:
        daemon.link = link
    daemon.t = 10
    mpvm.run("T[0] = 10").check()
    return usb, daemon


def _leds_sent(daemon: fw.Host) -> list[int]:
    """HID_LEDS payloads the unit sent, one per sequence number (retransmissions counted once)."""
    seen: dict[int, int] = {}
    for f in daemon.received:
        if isinstance(f, L.Frame) and f.type == L.HID_LEDS:
            seen.setdefault(f.seq, L.decode_hid_leds(f.payload))
    return list(seen.values())


def _transmissions(daemon: fw.Host) -> int:
    return sum(1 for f in daemon.received if isinstance(f, L.Frame) and f.type == L.HID_LEDS)


def _set_leds(usb: UsbHost, daemon: fw.Host, leds: int, until: int) -> None:
    assert usb.set_report(bytes((0x02, leds))) == b""  # SET_REPORT on EP0, as the OS's HID driver sends it
    daemon.run(until)


def test_led_output_while_the_daemon_holds_the_link_reaches_it(mpvm: MicroPythonVM) -> None:
    usb, daemon = _ready(mpvm)
    _set_leds(usb, daemon, RING, 60)  # rings before any daemon: shown by the unit, told to nobody
    assert _leds_sent(daemon) == []
    daemon.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_AVAILABLE, L.STATE_HID_SOFTPHONE))
    daemon.run(120)
    assert _leds_sent(daemon) == [RING]  # the current LEDs, right after the daemon's first STATE
    _set_leds(usb, daemon, OFF_HOOK | MUTE, 200)  # answered on screen, then muted
    _set_leds(usb, daemon, OFF_HOOK | MUTE, 260)  # the same report again: nothing new to tell
    assert _leds_sent(daemon) == [RING, OFF_HOOK | MUTE]
    assert daemon.link.pending == 0 and _transmissions(daemon) == 2  # ACKed, never retransmitted
    # the unit's lamps (hook, mute) keep showing the daemon's STATE (idle), not the HID LEDs: the
    # daemon folds them in
    shown = mpvm.run("print(app.unit.host, app.unit.hid, app.scene[0], app.scene[4])").check().split()
    assert shown == ["1", str(OFF_HOOK | MUTE), "0", "0"]
    _set_leds(usb, daemon, 0, 320)  # hung up
    assert _leds_sent(daemon)[-1] == 0


def test_nothing_is_sent_while_the_leds_are_off(mpvm: MicroPythonVM) -> None:
    _, daemon = _ready(mpvm)
    daemon.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_AVAILABLE))
    daemon.run(200)
    assert _leds_sent(daemon) == []


def _old_linkproto() -> types.ModuleType:
    """The host's linkproto as a daemon from before HID_LEDS has it: the type is unknown."""
    old = types.ModuleType("old_linkproto")
    exec(compile(LINKPROTO_SOURCE.read_text(), "old_linkproto", "exec"), old.__dict__)
    del old.MESSAGE_NAMES[L.HID_LEDS]
    return old


def test_an_older_daemons_nack_stops_it_without_retries(mpvm: MicroPythonVM) -> None:
    old = _old_linkproto()
    usb, daemon = _ready(mpvm, old.Link())
    daemon.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_AVAILABLE))
    daemon.run(60)
    _set_leds(usb, daemon, RING, 1500)  # long enough for the unit's four tries, had it retried

    def refused() -> list[int]:
        """Frames the old daemon could not decode (and NACKed): their message types."""
        return [e.type for e in daemon.received if isinstance(e, old.DecodeError) and e.code == L.ERR_UNKNOWN_TYPE]

    assert refused() == [L.HID_LEDS]  # sent once, NACKed, not retried
    _set_leds(usb, daemon, OFF_HOOK, 2500)  # later changes are not sent to this daemon
    assert refused() == [L.HID_LEDS]
    # the link is fine: still the daemon's unit, no press shown as "not confirmed"
    assert mpvm.run("print(app.unit.host, app.unit.refused)").check().split() == ["1", "0"]
    daemon.run(2700, script=[(2520, 1, 0), (2580, 1, 1)])  # a mute press still reaches the daemon
    assert [b for b, _, _ in fw.events(daemon.received)] == ["mute"]
    # a new daemon session (HELLO, then STATE) hears the LEDs again
    new = L.Link()
    daemon.link = new
    daemon.received.clear()
    daemon.send(L.HELLO, L.encode_json({"proto": 1, "host": "new"}))
    daemon.run(2800)
    daemon.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_AVAILABLE))
    daemon.run(2900)
    assert _leds_sent(daemon) == [OFF_HOOK]
