"""The composite USB device (CDC link + HID telephony), set up once from boot.py.

``configure()`` does it on boards whose ``machine`` has ``USBDevice`` (MicroPython's
runtime USB, RP2040) and nothing elsewhere. It keeps MicroPython's built-in CDC
(the link, stdin/stdout) and adds one HID interface after it (offhook_fw/hid.py).
IDs: /lib/usbids.py (one source with the host; hw/usb-ids.md); descriptors: hw/hid.md. The Hid
object is ``offhook_fw.hid.DEVICE``, where the application (offhook_fw/app.py) picks it up; this
module is needed only once.
"""

import sys

import machine
from usbids import PID, VID

sys.modules.pop("usbids", None)  # two numbers needed, not the module (nor its host-side sets)

MANUFACTURER = "offhook"
PRODUCT = "offhook desk unit"
INTERFACE = "offhook telephony"


def device_descriptor(builtin, bcd_device):
    """The built-in device descriptor with offhook's IDs (class stays IAD/composite)."""
    d = bytearray(builtin)
    d[8] = VID & 0xFF
    d[9] = VID >> 8
    d[10] = PID & 0xFF
    d[11] = PID >> 8
    d[12] = bcd_device & 0xFF
    d[13] = bcd_device >> 8
    return bytes(d)


def config_descriptor(builtin, itf, ep, istr, report_len):
    """The built-in CDC configuration plus our HID interface (two interrupt endpoints, 64 bytes)."""
    extra = (
        bytes((9, 4, itf, 0, 2, 3, 0, 0, istr))  # interface: HID, no boot subclass
        + bytes((9, 0x21, 0x11, 0x01, 0, 1, 0x22, report_len & 0xFF, report_len >> 8))  # HID 1.11
        + bytes((7, 5, 0x80 | ep, 3, 64, 0, 1))  # interrupt IN, 1 ms
        + bytes((7, 5, ep, 3, 64, 0, 1))  # interrupt OUT, 1 ms
    )
    cfg = bytearray(builtin) + extra
    total = len(cfg)
    cfg[2] = total & 0xFF
    cfg[3] = total >> 8
    cfg[4] = itf + 1  # bNumInterfaces
    return bytes(cfg)


def _bcd(version):
    parts = (version.split(".") + ["0", "0"])[:2]
    major = int(parts[0]) % 100
    minor = int("".join(c for c in parts[1] if c.isdigit()) or "0") % 100
    return (major // 10) << 12 | (major % 10) << 8 | (minor // 10) << 4 | minor % 10


def configure():
    """Set up the composite device; returns the Hid object, or None on boards without USBDevice."""
    if not hasattr(machine, "USBDevice"):
        return None
    from offhook_fw import VERSION, hid

    if hid.DEVICE is not None:
        return hid.DEVICE

    usbd = machine.USBDevice()
    builtin = usbd.BUILTIN_CDC
    itf = builtin.itf_max  # our interface and endpoint follow the built-in CDC's
    ep = builtin.ep_max
    istr = builtin.str_max
    dev = hid.Hid(itf, ep, usbd)
    serial = "".join("%02x" % b for b in machine.unique_id())
    strings = {1: MANUFACTURER, 2: PRODUCT, 3: serial, istr: INTERFACE}
    usbd.active(False)
    usbd.builtin_driver = builtin  # type: ignore[attr-defined]
    usbd.config(
        device_descriptor(builtin.desc_dev, _bcd(VERSION)),
        config_descriptor(builtin.desc_cfg, itf, ep, istr, len(hid.REPORT_DESCRIPTOR)),
        strings,
        dev.open_itf,
        dev.reset,
        dev.control,
        dev.xfer,
    )
    usbd.active(True)
    setattr(hid, "DEVICE", dev)  # noqa: B010 (hid.DEVICE is None until now)
    # Needed once: let its bytecode go (boot.py should not keep a reference either).
    sys.modules.pop(__name__, None)
    return dev
