"""Simulated ``machine.USBDevice`` (MicroPython's runtime USB API) for the VM. Not on units.

The device side is the real API: ``USBDevice()`` (a singleton), ``BUILTIN_*`` drivers,
``builtin_driver``, ``config(desc_dev, desc_cfg, desc_strs, open_itf_cb, reset_cb,
control_xfer_cb, xfer_cb)``, ``active()``, ``submit_xfer(ep, buffer)``, ``stall()``,
``remote_wakeup()``, with the documented rules (config only while inactive,
submit_xfer raises OSError when inactive and returns False when unconfigured or
the endpoint is busy). The host side stands in for the bus and the USB stack:
``host_control(setup, data)`` runs one control transfer (the stack answers device
GET_DESCRIPTOR and SET_CONFIGURATION itself, as TinyUSB does, calling open_itf_cb
for each runtime interface; requests for runtime interfaces go to control_xfer_cb
in its three stages), ``host_in(ep)`` / ``host_out(ep, data)`` complete submitted
interrupt transfers, ``host_reset()`` is a bus reset. Install in the VM with
``import machine, usbdevice; machine.USBDevice = usbdevice.USBDevice``.
"""

import binascii


class _Builtin:
    def __init__(self, itf_max, ep_max, str_max, desc_dev, desc_cfg):
        self.itf_max = itf_max
        self.ep_max = ep_max
        self.str_max = str_max
        self.desc_dev = desc_dev
        self.desc_cfg = desc_cfg


# The RP2 port's built-in descriptors (MicroPython 1.27: VID 2E8A PID 0005, CDC with IAD).
_DEV = b"\x12\x01\x00\x02\xef\x02\x01\x40\x8a\x2e\x05\x00\x00\x01\x01\x02\x03\x01"
_CDC_CFG = (
    b"\x09\x02\x4b\x00\x02\x01\x00\x80\x7d"
    b"\x08\x0b\x00\x02\x02\x02\x00\x00"
    b"\x09\x04\x00\x00\x01\x02\x02\x00\x04"
    b"\x05\x24\x00\x20\x01\x05\x24\x01\x00\x01\x04\x24\x02\x06\x05\x24\x06\x00\x01"
    b"\x07\x05\x81\x03\x08\x00\x01"
    b"\x09\x04\x01\x00\x02\x0a\x00\x00\x00"
    b"\x07\x05\x02\x02\x40\x00\x00\x07\x05\x82\x02\x40\x00\x00"
)


class Stall(Exception):
    """The device stalled a control transfer (a callback returned False)."""


class USBDevice:
    BUILTIN_NONE = _Builtin(0, 1, 1, _DEV, b"")
    BUILTIN_CDC = _Builtin(2, 3, 5, _DEV, _CDC_CFG)
    BUILTIN_DEFAULT = BUILTIN_CDC
    _instance = None

    def __new__(cls):
        if USBDevice._instance is None:
            obj = object.__new__(cls)
            obj._init()
            USBDevice._instance = obj
        return USBDevice._instance

    def _init(self):
        self.builtin_driver = USBDevice.BUILTIN_CDC
        self._active = False
        self.configured = False
        self.desc_dev = None
        self.desc_cfg = None
        self.desc_strs = None
        self._open_itf_cb = None
        self._reset_cb = None
        self._control_xfer_cb = None
        self._xfer_cb = None
        self._pending = {}
        self._stalled = {}
        self.reenumerations = 0

    # ------------------------------------------------------------ the device side (real API)

    def config(
        self, desc_dev, desc_cfg, desc_strs=None, open_itf_cb=None, reset_cb=None, control_xfer_cb=None, xfer_cb=None
    ):
        if self._active:
            raise OSError(16)  # EBUSY: deactivate first
        self.desc_dev = desc_dev  # kept by reference, as the C implementation does
        self.desc_cfg = desc_cfg
        self.desc_strs = desc_strs
        self._open_itf_cb = open_itf_cb
        self._reset_cb = reset_cb
        self._control_xfer_cb = control_xfer_cb
        self._xfer_cb = xfer_cb

    def active(self, value=None):
        if value is None:
            return self._active
        value = bool(value)
        if value != self._active:
            self._active = value
            self.configured = False
            self._pending = {}
            if value:
                self.reenumerations += 1
        return self._active

    def submit_xfer(self, ep, buffer):
        if not self._active:
            raise OSError(22)  # EINVAL
        if ep & 0x7F == 0:
            raise ValueError("ep 0 is the control endpoint")
        if not self.configured or ep in self._pending:
            return False
        self._pending[ep] = buffer
        return True

    def stall(self, ep, stall=None):
        if not self._active:
            raise OSError(22)
        before = self._stalled.get(ep, False)
        if stall is not None:
            self._stalled[ep] = bool(stall)
        return before

    def remote_wakeup(self):
        return False

    # ------------------------------------------------------------ the host side (tests)

    def host_reset(self):
        """A bus reset: in-flight transfers never complete; the host enumerates again."""
        self.configured = False
        self._pending = {}
        if self._reset_cb:
            self._reset_cb()

    def host_control(self, setup, data=None):
        """One control transfer; returns the IN data (bytes) or b"", raises Stall."""
        if not self._active:
            raise OSError("device not active (not attached to the bus)")
        setup = bytes(setup)
        rtype, req = setup[0], setup[1]
        value = setup[2] | setup[3] << 8
        length = setup[6] | setup[7] << 8
        recipient = rtype & 0x1F
        if rtype == 0x80 and req == 6:  # device GET_DESCRIPTOR: the stack answers
            return self._descriptor(value >> 8, value & 0xFF)[:length]
        if rtype == 0x00 and req == 5:  # SET_ADDRESS
            return b""
        if rtype == 0x00 and req == 9:  # SET_CONFIGURATION
            self._set_configuration(value)
            return b""
        if recipient == 1 and setup[4] < self.builtin_driver.itf_max:
            return b""  # the built-in CDC's interface: TinyUSB's own driver answers
        cb = self._control_xfer_cb
        if cb is None:
            raise Stall("no control_xfer_cb")
        view = memoryview(bytearray(setup))
        result = cb(1, view)
        if result is False or result is None:
            raise Stall("SETUP stalled: " + binascii.hexlify(setup).decode())
        out = b""
        if result is not True:
            if rtype & 0x80:
                out = bytes(result)[:length]
            else:
                payload = bytes(data or b"")
                if len(payload) != length or len(result) < length:
                    raise Stall("OUT data does not fit the buffer")
                for i in range(length):
                    result[i] = payload[i]
            if cb(2, view) is False:
                raise Stall("DATA stalled")
        elif length and not rtype & 0x80 and data:
            raise Stall("device accepted no data stage")
        if cb(3, view) is False:
            raise Stall("ACK stalled")
        return out

    def _descriptor(self, dtype, index):
        if dtype == 1:
            return self.desc_dev
        if dtype == 2:
            return self.desc_cfg
        if dtype == 3:
            if index == 0:
                return b"\x04\x03\x09\x04"
            text = None
            try:
                text = self.desc_strs[index] if self.desc_strs is not None else None
            except (KeyError, IndexError):
                text = None
            if text is None:
                text = "builtin%d" % index
            enc = bytearray()
            for ch in text:
                enc.append(ord(ch))
                enc.append(0)
            return bytes((2 + len(enc), 3)) + bytes(enc)
        raise Stall("no descriptor type %d" % dtype)

    def _set_configuration(self, value):
        self._pending = {}
        self.configured = value != 0
        if not self.configured or self._open_itf_cb is None:
            return
        cfg = self.desc_cfg
        view = memoryview(cfg)
        i = cfg[0]
        while i < len(cfg):
            if cfg[i + 1] == 4 and cfg[i + 2] >= self.builtin_driver.itf_max:
                end = i + cfg[i]
                while end < len(cfg) and cfg[end + 1] not in (4, 11):
                    end += cfg[end]
                self._open_itf_cb(view[i:end])
                i = end
            else:
                i += cfg[i]

    def host_in(self, ep):
        """The host polls IN endpoint ``ep``: the submitted buffer's bytes, or None (NAK)."""
        buf = self._pending.pop(ep | 0x80, None)
        if buf is None:
            return None
        data = bytes(buf)
        if self._xfer_cb:
            self._xfer_cb(ep | 0x80, True, len(data))
        return data

    def host_out(self, ep, data):
        """The host sends ``data`` to OUT endpoint ``ep``; False if the device NAKs (none submitted)."""
        buf = self._pending.get(ep & 0x7F)
        if buf is None:
            return False
        if len(data) > len(buf):
            raise ValueError("OUT transfer larger than the submitted buffer")
        del self._pending[ep & 0x7F]
        for i in range(len(data)):
            buf[i] = data[i]
        if self._xfer_cb:
            self._xfer_cb(ep & 0x7F, True, len(data))
        return True

    # hex forms for a JavaScript bridge
    def host_in_hex(self, ep):
        data = self.host_in(ep)
        return "" if data is None else binascii.hexlify(data).decode()

    def host_out_hex(self, ep, text):
        return self.host_out(ep, binascii.unhexlify(text))
