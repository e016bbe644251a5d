"""USB HID telephony: softphone call control without the host daemon, and the link over HID.

One HID interface of the composite device (usb_setup.py builds the descriptors and hands
this class's callbacks to ``machine.USBDevice.config``). Reports (hw/hid.md, and the
bytes in hw/hid_report_descriptor.hex, which REPORT_DESCRIPTOR equals):

- ID 1 in: Hook Switch (absolute), Phone Mute, Flash, Redial (one-shot: 1 then 0)
- ID 2 out: LEDs Off-Hook, Mute, Ring, Hold -> ``unit.hid`` (scenes.HID_* bits, same order)
- ID 3 in: Consumer Volume Increment / Decrement (1 then 0)
- ID 16 in / 17 out: link bytes, 63-byte payload = [count][seq][61 bytes]

Only loaded on boards whose ``machine`` has ``USBDevice``. Buffers are allocated once;
no report allocates. USB callbacks and the asyncio tasks share the rings: each index has
a single writer.
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

ID_PHONE = const(1)
ID_LEDS = const(2)
ID_CONSUMER = const(3)
ID_LINK_IN = const(0x10)
ID_LINK_OUT = const(0x11)
REPORT_SIZE = const(64)  # report ID + 63 bytes: one full-speed interrupt packet
CHUNK = const(61)  # link bytes per report, after [count][seq]

PHONE_HOOK = const(0x01)
PHONE_MUTE = const(0x02)
PHONE_FLASH = const(0x04)
PHONE_REDIAL = const(0x08)
VOLUME_UP = const(0x01)
VOLUME_DOWN = const(0x02)
LED_OFF_HOOK = const(0x01)  # = scenes.HID_OFF_HOOK (then MUTE 0x02, RING 0x04, HOLD 0x08)

# STATE flag (beyond PROTOCOL.md's 0x0080): the daemon's config names a HID softphone, so
# the unit keeps sending Telephony-page inputs while the daemon holds the link.
STATE_HID_SOFTPHONE = const(0x0100)

_SHORT = const(1)  # linkproto.GESTURE_SHORT
_TX_SIZE = const(512)
_RX_SIZE = const(256)
_QUEUE = const(8)  # short reports waiting for the IN endpoint

# USB control requests
_GET_DESCRIPTOR = const(6)
_GET_REPORT = const(1)
_GET_IDLE = const(2)
_GET_PROTOCOL = const(3)
_SET_REPORT = const(9)
_SET_IDLE = const(10)
_SET_PROTOCOL = const(11)

# button (linkproto) -> (report id << 8 | bit); 0: not a HID usage
_USAGES = (
    ID_PHONE << 8 | PHONE_HOOK,
    ID_PHONE << 8 | PHONE_MUTE,
    ID_PHONE << 8 | PHONE_FLASH,
    ID_PHONE << 8 | PHONE_REDIAL,
    0,  # state: agent state has no HID usage
    ID_CONSUMER << 8 | VOLUME_UP,
    ID_CONSUMER << 8 | VOLUME_DOWN,
)


def hid_descriptor():
    """The 9-byte HID class descriptor (HID 1.11, one report descriptor)."""
    n = len(REPORT_DESCRIPTOR)
    return bytes((9, 0x21, 0x11, 0x01, 0, 1, 0x22, n & 0xFF, n >> 8))


class Hid:
    def __init__(self, itf, ep):
        self.itf = itf
        self.ep_in = 0x80 | ep
        self.ep_out = ep
        self.usbd = None  # machine.USBDevice, set by usb_setup.configure()
        self.unit = None
        self.configured = False
        self.leds = 0  # last LED output report (LED_* bits)
        self.hook = 0  # the Hook Switch state the unit reports
        self.idle = 0
        self.protocol = 1
        self.reports = 0  # input reports submitted (for tests and health)
        self._in = bytearray(REPORT_SIZE)
        self._in_mv = memoryview(self._in)
        self._in_short = self._in_mv[:2]
        self._out = bytearray(REPORT_SIZE)
        self._ctl = bytearray(REPORT_SIZE)
        self._ctl_mv = memoryview(self._ctl)
        self._busy = False
        self._out_pending = False
        self._q = bytearray(_QUEUE * 2)
        self._qhead = 0
        self._qtail = 0
        self._tx = bytearray(_TX_SIZE)
        self._txhead = 0
        self._txtail = 0
        self._tx_seq = 0
        self._rx = bytearray(_RX_SIZE)
        self._rxhead = 0
        self._rxtail = 0
        self._rx_seq = -1
        self.link = HidLink(self)

    def attach(self, unit):
        self.unit = unit

    # ------------------------------------------------------------ USBDevice callbacks

    def open_itf(self, desc):
        # SET_CONFIGURATION: the host accepted our interface. Start reading, drop stale link bytes.
        if len(desc) < 3 or desc[2] != self.itf:
            return
        self.configured = True
        self._busy = False
        self._qhead = self._qtail = 0
        self._txhead = self._txtail = 0
        self._rxhead = self._rxtail = 0
        self._rx_seq = -1
        self._out_pending = False
        self._read_next()
        self.pump()

    def reset(self):
        self.configured = False
        self._busy = False
        self._out_pending = False

    def control(self, stage, request):
        """control_xfer_cb: requests addressed to our interface (others: stall)."""
        rtype = request[0]
        req = request[1]
        value = request[2] | request[3] << 8
        if request[4] != self.itf or (rtype & 0x1F) != 1:  # recipient interface, ours
            return False
        length = request[6] | request[7] << 8
        if stage != 1:
            if stage == 3 and rtype == 0x21 and req == _SET_REPORT:
                self._output(self._ctl, min(length, REPORT_SIZE))
            return True
        if rtype == 0x81 and req == _GET_DESCRIPTOR:
            if value >> 8 == 0x22:
                return REPORT_DESCRIPTOR
            if value >> 8 == 0x21:
                return hid_descriptor()
            return False
        if rtype == 0xA1:
            if req == _GET_REPORT:
                return self._get_report(value >> 8, value & 0xFF)
            if req == _GET_IDLE:
                self._ctl[0] = self.idle
                return self._ctl_mv[:1]
            if req == _GET_PROTOCOL:
                self._ctl[0] = self.protocol
                return self._ctl_mv[:1]
            return False
        if rtype == 0x21:
            if req == _SET_REPORT:
                if length > REPORT_SIZE:
                    return False
                return self._ctl_mv[:length]
            if req == _SET_IDLE:
                self.idle = value >> 8  # we report on change only; any rate is fine
                return True
            if req == _SET_PROTOCOL:
                self.protocol = value & 0xFF
                return True
        return False

    def xfer(self, ep, result, count):
        """xfer_cb: an interrupt transfer finished."""
        if ep == self.ep_in:
            self._busy = False
            self.pump()
        elif ep == self.ep_out:
            self._out_pending = False
            if result:
                self._output(self._out, count)
            self._read_next()

    # ------------------------------------------------------------ reports in

    def _get_report(self, rtype, rid):
        ctl = self._ctl
        ctl[0] = rid
        if rtype == 1 and rid == ID_PHONE:
            ctl[1] = self.hook
        elif rtype == 1 and rid == ID_CONSUMER:
            ctl[1] = 0
        elif rtype == 2 and rid == ID_LEDS:
            ctl[1] = self.leds
        else:
            return False
        return self._ctl_mv[:2]

    def gesture(self, button, gesture):
        """A recognised gesture; True if it went to the HID host as input reports."""
        if gesture != _SHORT or button >= len(_USAGES) or not self.configured:
            return False
        usage = _USAGES[button]
        if not usage:
            return False
        rid = usage >> 8
        bit = usage & 0xFF
        unit = self.unit
        if unit is not None and unit.host and (rid == ID_CONSUMER or not unit.flags & STATE_HID_SOFTPHONE):
            return False  # the daemon holds the link: it answers calls and sets the volume
        if rid == ID_CONSUMER:
            return self._queue(rid, bit) and self._queue(rid, 0)
        if bit == PHONE_HOOK:
            # Absolute: ask for the other state. The host confirms with the Off-Hook LED.
            if self._free() < 1:
                return False
            self.hook ^= PHONE_HOOK
            return self._queue(rid, self.hook)
        # One-shot request: one report with the bit, one without; never repeated.
        return self._queue(rid, self.hook | bit) and self._queue(rid, self.hook)

    def _free(self):
        return _QUEUE - ((self._qtail - self._qhead) % (2 * _QUEUE))

    def _queue(self, rid, value):
        if self._free() < 1:
            return False
        i = (self._qtail % _QUEUE) * 2
        self._q[i] = rid
        self._q[i + 1] = value
        self._qtail = (self._qtail + 1) % (2 * _QUEUE)
        self.pump()
        return True

    def pump(self):
        """Submit the next input report if the IN endpoint is free: button reports first."""
        if not self.configured or self._busy or self.usbd is None:
            return
        buf = self._in
        if self._qhead != self._qtail:
            i = (self._qhead % _QUEUE) * 2
            buf[0] = self._q[i]
            buf[1] = self._q[i + 1]
            if self.usbd.submit_xfer(self.ep_in, self._in_short):
                self._qhead = (self._qhead + 1) % (2 * _QUEUE)
                self._busy = True
                self.reports += 1
            return
        n = (self._txtail - self._txhead) % _TX_SIZE
        if not n:
            return
        if n > CHUNK:
            n = CHUNK
        buf[0] = ID_LINK_IN
        buf[1] = n
        buf[2] = self._tx_seq
        tx = self._tx
        head = self._txhead
        for k in range(n):
            buf[3 + k] = tx[(head + k) % _TX_SIZE]
        for k in range(3 + n, REPORT_SIZE):
            buf[k] = 0
        if self.usbd.submit_xfer(self.ep_in, self._in_mv):
            self._txhead = (head + n) % _TX_SIZE
            self._tx_seq = (self._tx_seq + 1) & 0xFF
            self._busy = True
            self.reports += 1

    # ------------------------------------------------------------ reports out

    def _read_next(self):
        # Flow control: the OUT endpoint NAKs until there is room for a whole link report.
        if not self.configured or self._out_pending or self.usbd is None:
            return
        if _RX_SIZE - 1 - (self._rxtail - self._rxhead) % _RX_SIZE < CHUNK + 1:
            return
        if self.usbd.submit_xfer(self.ep_out, self._out):
            self._out_pending = True

    def _output(self, buf, count):
        if count < 2:
            return
        rid = buf[0]
        if rid == ID_LEDS:
            self.set_leds(buf[1] & 0x0F)
        elif rid == ID_LINK_OUT:
            n = buf[1]
            seq = buf[2] if count > 2 else 0
            if n > CHUNK or count < 3 + n:
                self._rx_put(0)  # garbled: end whatever frame was in progress
                self._rx_seq = -1
                return
            if self._rx_seq >= 0 and seq != (self._rx_seq + 1) & 0xFF:
                self._rx_put(0)  # a report went missing: drop the half frame now
            self._rx_seq = seq
            for k in range(n):
                self._rx_put(buf[3 + k])

    def _rx_put(self, byte):
        nxt = (self._rxhead + 1) % _RX_SIZE
        if nxt == self._rxtail:
            return  # full (cannot happen with flow control; the CRC would catch it)
        self._rx[self._rxhead] = byte
        self._rxhead = nxt

    def set_leds(self, bits):
        """LED output report from the softphone: shown by the unit when no daemon holds the link."""
        changed = (bits ^ self.leds) & LED_OFF_HOOK
        self.leds = bits
        if changed:
            # The softphone went off or on hook (answered or hung up, maybe on screen): every later
            # report carries that state, so a mute press never hangs up or answers by accident.
            self.hook = bits & LED_OFF_HOOK
        unit = self.unit
        if unit is not None and unit.hid != bits:
            unit.hid = bits
            unit.changes += 1

    # ------------------------------------------------------------ the link stream

    def read_link(self):
        if self._rxhead == self._rxtail:
            return None
        head = self._rxhead
        tail = self._rxtail
        n = (head - tail) % _RX_SIZE
        out = bytearray(n)
        for k in range(n):
            out[k] = self._rx[(tail + k) % _RX_SIZE]
        self._rxtail = head
        self._read_next()
        return bytes(out)

    def write_link(self, data):
        """Queue link bytes; a write that does not fit is dropped whole (the link retries)."""
        n = len(data)
        if not self.configured or n > _TX_SIZE - 1 - (self._txtail - self._txhead) % _TX_SIZE:
            return False
        tail = self._txtail
        tx = self._tx
        for k in range(n):
            tx[(tail + k) % _TX_SIZE] = data[k]
        self._txtail = (tail + n) % _TX_SIZE
        self.pump()
        return True


class HidLink:
    """The link over vendor reports, as a byte stream (read() -> bytes | None, write())."""

    def __init__(self, hid):
        self.hid = hid

    def read(self):
        return self.hid.read_link()

    def write(self, data):
        self.hid.write_link(data)


class LinkMux:
    """CDC and HID link streams as one: replies go where the host last spoke (CDC at first)."""

    def __init__(self, cdc, hid_link):
        self.cdc = cdc
        self.hid = hid_link
        self.via_hid = False

    def read(self):
        data = self.cdc.read()
        if data:
            self.via_hid = False
            return data
        data = self.hid.read()
        if data:
            self.via_hid = True
        return data

    def write(self, data):
        (self.hid if self.via_hid else self.cdc).write(data)
