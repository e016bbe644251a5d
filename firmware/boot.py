# Runs before main.py on every reset; outside the application slots, never updated over the link.
# 1. Boot loader: pick the slot (A/B, rollback after 3 unconfirmed boots, safe mode while the
#    hook key is held at power-on) and put it first on sys.path. The decision is bootsel.BOOT.
# 2. USB: the composite device (CDC + HID) where the board supports it (usb_setup, issue 10).
import sys


def _safe_held():
    # The safe-mode key (K1, hook) per platform: boards/ lives inside the slots, so not from there.
    pin = {"rp2": 2, "esp32": 4, "webassembly": 2}.get(sys.platform)
    if pin is None:
        return False
    try:
        import machine

        if sys.platform == "webassembly":  # the simulator drives the level itself
            return machine.Pin(pin).value() == 0
        return machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0
    except Exception:
        return False


def _boot(held):
    if "/lib" not in sys.path:
        sys.path.append("/lib")
    import bootsel

    try:
        slot, reason = bootsel.select(held)
    except Exception as exc:  # unreadable flash state: the safe-mode loader still answers
        slot, reason = "safe", "boot state unreadable: %s" % exc
    bootsel.BOOT = (slot, reason)
    if slot not in ("safe", "factory"):
        where = bootsel.slot_dir(slot)
        sys.path.insert(0, where + "/lib")
        sys.path.insert(0, where)


_boot(_safe_held())
del _boot, _safe_held  # boot.py's globals outlive it (main.py shares them): keep the heap


def _usb():
    # After slot selection: usb_setup imports offhook_fw (HID), which lives in the slot.
    try:
        import usb_setup

        usb_setup.configure()
    except Exception:  # no USBDevice, safe mode without a slot, or a fault: CDC alone still works
        pass
    sys.modules.pop("usb_setup", None)  # needed once: free its code (the device keeps its descriptors)


_usb()
del _usb
