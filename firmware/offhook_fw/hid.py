"""USB HID telephony: softphone call control without the host daemon, and the link over HID.

One HID interface of the composite device (usb_setup.py builds the descriptors and hands
this class's callbacks to ``machine.USBDevice.config``). Reports (hw/hid.md, and the
bytes in hw/hid_report_descriptor.hex, which REPORT_DESCRIPTOR equals):

- ID 1 in: Hook Switch (absolute), Phone Mute, Flash, Redial (one-shot: 1 then 0)
- ID 2 out: LEDs Off-Hook, Mute, Ring, Hold -> ``unit.hid`` (linkproto.HID_LED_* bits, same order)
- ID 3 in: Consumer Volume Increment / Decrement (1 then 0)
- ID 16 in / 17 out: link bytes, framed by /lib/hidframe.py (offhook_fw/hidlink.py loads it when
  the host first writes one)

Only loaded on boards whose ``machine`` has ``USBDevice``; kept small (its bytecode sits in
RAM). Buffers are allocated once; no report allocates. USB callbacks (run by the scheduler
between bytecodes) and the asyncio tasks share the rings: each index has a single writer,
and an IN transfer is submitted only while none is pending, so the two never race.
The Hid object is also the session's link stream: CDC and vendor reports as one, replies
going where the host last spoke (CDC until the host writes a vendor report).
"""

from micropython import const

REPORT_DESCRIPTOR = (
    b"\x05\x0b\x09\x05\xa1\x01\x85\x01\x15\x00\x25\x01\x75\x01\x95\x01"
    b"\x09\x20\x81\x02\x09\x2f\x81\x06\x09\x21\x81\x06\x09\x24\x81\x06\x95\x04\x81\x03"
    b"\x85\x02\x05\x08\x95\x01\x09\x17\x91\x02\x09\x09\x91\x02\x09\x18\x91\x02\x09\x20\x91\x02"
    b"\x95\x04\x91\x03\xc0"
    b"\x05\x0c\x09\x01\xa1\x01\x85\x03\x15\x00\x25\x01\x75\x01\x95\x01"
    b"\x09\xe9\x81\x02\x09\xea\x81\x02\x95\x06\x81\x03\xc0"
    b"\x06\xa0\xff\x09\x01\xa1\x01\x85\x10\x15\x00\x26\xff\x00\x75\x08\x95\x3f"
    b"\x09\x02\x81\x02\x85\x11\x09\x03\x91\x02\xc0"
)

_ID_PHONE = const(1)
_ID_LEDS = const(2)
_ID_CONSUMER = const(3)
_HOOK = const(0x01)  # report 1 bit 0; the LED report's Off-Hook is bit 0 too
_Q = const(4)  # short reports waiting for the IN endpoint
# Copies of shared numbers, inlined so this module (RAM from boot on) imports neither linkproto
# nor hidframe; tests/test_one_source.py compares each with its home.
_REPORT_LINK_OUT = const(0x11)  # hidframe.REPORT_LINK_OUT
_REPORT_SIZE = const(64)  # hidframe.REPORT_SIZE: report ID + 63 bytes, one full-speed interrupt packet
_GESTURE_SHORT = const(1)
# STATE flag: the daemon's config names a HID softphone, so the unit keeps sending
# Telephony-page inputs while the daemon holds the link.
_STATE_HID_SOFTPHONE = const(0x0100)

# USB numbers, named as micropython-lib's usb-device-hid names them (control requests: HID 1.11 section 7).
_EP_IN_FLAG = const(0x80)
_STAGE_SETUP = const(1)
_STAGE_ACK = const(3)
_RECIPIENT_MASK = const(0x1F)  # bmRequestType bits 0..4
_RECIPIENT_INTERFACE = const(0x01)
_REQ_STANDARD_IN = const(0x81)  # bmRequestType: device to host, standard, interface
_REQ_CLASS_OUT = const(0x21)  # bmRequestType: host to device, class, interface
_REQ_CONTROL_GET_DESCRIPTOR = const(0x06)
_REQ_CONTROL_SET_REPORT = const(0x09)
_REQ_CONTROL_SET_IDLE = const(0x0A)
_DESC_REPORT_TYPE = const(0x22)

# linkproto button -> report id << 8 | bit (0: none): hook, mute, hold (Flash), escalate
# (Redial), state (none), vol_up, vol_down.
_USAGES = (0x101, 0x102, 0x104, 0x108, 0, 0x301, 0x302)

DEVICE = None  # the Hid object once usb_setup.configure() made one


class Hid:
    def __init__(self, itf, ep, usbd, unit=None, cdc=None):
        self.itf = itf
        self.ep = ep  # OUT endpoint; IN is _EP_IN_FLAG | ep
        self.usbd = usbd  # machine.USBDevice
        self.unit = unit  # unit.Unit: LED outputs go to unit.hid (App sets it)
        self.cdc = cdc  # the CDC link stream (App sets it): this object is the session's stream over both
        self.via_hid = False
        self.configured = False
        self.leds = 0  # last LED output report (bits = linkproto.HID_LED_*)
        self.hook = 0  # the Hook Switch state the unit reports
        self.link = None  # hidlink.HidLink once the host speaks the link over HID
        self._held = 0  # size of a first link report waiting in _out for the link code
        self._busy = False
        self._reading = False
        self._in = bytearray(_REPORT_SIZE)
        self._in_two = memoryview(self._in)[:2]
        self._out = bytearray(_REPORT_SIZE)
        self._ctl = bytearray(0)  # SET_REPORT's data stage (made per request: LED changes are rare)
        self._q = bytearray(_Q * 2)
        self._qh = 0
        self._qt = 0  # indexes mod 2 * _Q: full and empty differ

    # ------------------------------------------------------------ USBDevice callbacks

    def open_itf(self, desc):
        # SET_CONFIGURATION: the host accepted our interface. Start reading; drop stale link bytes.
        if desc[2] != self.itf:
            return
        self.configured = True
        self._busy = self._reading = False
        self._qh = self._qt = self._held = 0
        if self.link is not None:
            self.link.clear()
        self._read_next()

    def reset(self):
        self.configured = self._busy = self._reading = False

    def control(self, stage, req):
        """control_xfer_cb for our interface: report descriptor, SET_IDLE, SET_REPORT.

        Everything else stalls: GET_REPORT, GET_IDLE and the boot-protocol requests are
        optional for a device without boot subclass (hw/hid.md)."""
        rtype = req[0]
        if req[4] != self.itf or rtype & _RECIPIENT_MASK != _RECIPIENT_INTERFACE:
            return False
        code = req[1]
        if stage == _STAGE_ACK and rtype == _REQ_CLASS_OUT and code == _REQ_CONTROL_SET_REPORT:
            self._output(self._ctl, req[6])
        if stage != _STAGE_SETUP:
            return True
        if rtype == _REQ_STANDARD_IN and code == _REQ_CONTROL_GET_DESCRIPTOR and req[3] == _DESC_REPORT_TYPE:
            return REPORT_DESCRIPTOR
        if rtype == _REQ_CLASS_OUT and code == _REQ_CONTROL_SET_REPORT and req[7] == 0 and req[6] <= _REPORT_SIZE:
            self._ctl = bytearray(req[6])
            return self._ctl
        if rtype == _REQ_CLASS_OUT and code == _REQ_CONTROL_SET_IDLE:
            return True  # we report on change only: any idle rate is fine
        return False

    def xfer(self, ep, result, count):
        """xfer_cb: an interrupt transfer finished."""
        if ep == self.ep:
            self._reading = False
            if result:
                self._output(self._out, count)
            self._read_next()
        else:
            self._busy = False
            self.pump()

    # ------------------------------------------------------------ input reports

    def gesture(self, button, gesture):
        """A recognised gesture; True if it went to the HID host as input reports."""
        if gesture != _GESTURE_SHORT or button >= len(_USAGES) or not self.configured:
            return False
        usage = _USAGES[button]
        rid = usage >> 8
        bit = usage & 0xFF
        unit = self.unit
        if not usage or unit.host and (rid == _ID_CONSUMER or not unit.flags & _STATE_HID_SOFTPHONE):
            return False  # the daemon holds the link: it answers calls and sets the volume
        free = _Q - (self._qt - self._qh) % (2 * _Q)
        if usage == _ID_PHONE << 8 | _HOOK:
            # Absolute: ask for the other state. The host confirms with the Off-Hook LED.
            if free < 1:
                return False
            self.hook ^= _HOOK
            self._put(rid, self.hook)
        else:
            # One-shot request: one report with the bit, one without; never repeated.
            if free < 2:
                return False
            base = self.hook if rid == _ID_PHONE else 0
            self._put(rid, base | bit)
            self._put(rid, base)
        self.pump()
        return True

    def _put(self, rid, value):
        i = (self._qt % _Q) * 2
        self._q[i] = rid
        self._q[i + 1] = value
        self._qt = (self._qt + 1) % (2 * _Q)

    def pump(self):
        """Submit the next input report if the IN endpoint is free: button reports first."""
        if not self.configured or self._busy:
            return
        buf = self._in
        if self._qh != self._qt:
            i = (self._qh % _Q) * 2
            buf[0] = self._q[i]
            buf[1] = self._q[i + 1]
            if self.usbd.submit_xfer(_EP_IN_FLAG | self.ep, self._in_two):
                self._qh = (self._qh + 1) % (2 * _Q)
                self._busy = True
            return
        link = self.link
        if link is not None and link.fill(buf) and self.usbd.submit_xfer(_EP_IN_FLAG | self.ep, buf):
            link.sent()
            self._busy = True

    # ------------------------------------------------------------ output reports

    def _read_next(self):
        # Flow control: the OUT endpoint NAKs until a whole link report fits.
        if self.configured and not self._reading and not self._held:
            if self.link is None or self.link.room():
                self._reading = self.usbd.submit_xfer(self.ep, self._out)

    def _output(self, buf, count):
        rid = buf[0]
        if count < 2:
            return
        if rid == _ID_LEDS:
            # The softphone's LEDs: shown by the unit when no daemon holds the link, and sent to
            # the daemon as HID_LEDS when one does (session.py).
            bits = buf[1] & 0x0F
            if (bits ^ self.leds) & _HOOK:
                # The softphone went off or on hook (maybe on screen): every later report carries
                # that state, so a mute press never hangs up or answers by accident.
                self.hook = bits & _HOOK
            self.leds = bits
            unit = self.unit
            if unit.hid != bits:
                unit.hid = bits
                unit.changes += 1
        elif rid == _REPORT_LINK_OUT:
            if self.link is None and buf is self._out:
                self._held = count  # kept in _out (OUT NAKed) until read() loads the link code
            elif self.link is not None:
                self.link.put(buf, count)

    # ------------------------------------------------------------ the link stream (Session's)

    def read(self):
        data = self.cdc.read()
        if data:
            self.via_hid = False
            return data
        if self._held:
            if self.link is None:
                from offhook_fw.hidlink import HidLink

                self.link = HidLink()
            self.link.put(self._out, self._held)
            self._held = 0
        link = self.link
        if link is None:
            return None
        data = link.take()
        self._read_next()
        if data:
            self.via_hid = True
        return data

    def write(self, data):
        link = self.link
        if not self.via_hid or link is None:
            self.cdc.write(data)
            return
        if self.configured and link.add(data):  # else dropped whole: the link retries
            self.pump()
