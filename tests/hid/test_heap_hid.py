"""Heap with USB HID active (RP2040 budget 48 KB after boot), and no allocation per HID report."""

from __future__ import annotations

from pathlib import Path

from offhook.firmware import vm_files
from offhook.vm import MicroPythonVM
from tests.firmware import fw
from tests.hid.usbhost import HID_PRELUDE

HEAP_BUDGET = 48 * 1024


def _heap_after_boot(vm: MicroPythonVM, files: dict[str, bytes], hid: bool) -> int:
    """Bytes in use after boot. The simulated machine and USBDevice stand in for C code on a
    board, so they are in the baseline. Each figure is collected two runs after the work: the
    VM's GC cannot free what a recent run's stack still points at."""
    vm.reset()
    vm.put_files(files)
    vm.run("import gc, machine, usbdevice\nmachine.USBDevice = usbdevice.USBDevice").check()
    vm.run("pass").check()
    empty = int(vm.run("gc.collect()\nprint(gc.mem_alloc())").check())
    if hid:  # what boot.py does, then the host's SET_CONFIGURATION
        vm.run("import usb_setup\nusb_setup.configure()\ndel usb_setup").check()
    vm.run("import vm_main\napp = vm_main.create()\napp.boot(0)").check()
    if hid:
        vm.run("machine.USBDevice().host_control(bytes((0, 9, 1, 0, 0, 0, 0, 0)))").check()
        assert vm.run("print(app.hid.configured)").check().strip() == "True"
    vm.run("pass").check()
    return int(vm.run("gc.collect()\nprint(gc.mem_alloc())").check()) - empty


def test_heap_after_boot_with_hid(mpvm: MicroPythonVM, tmp_path: Path) -> None:
    files = fw.compiled_files(vm_files(), tmp_path)  # .mpy, as on a unit
    without = _heap_after_boot(mpvm, files, hid=False)
    used = _heap_after_boot(mpvm, files, hid=True)
    print(
        f"\nfirmware heap after boot (.mpy): {without} bytes ({without / 1024:.1f} KB) without USB HID, "
        f"{used} bytes ({used / 1024:.1f} KB) with USB HID active (+{used - without})"
    )
    assert used > without  # HID really was loaded
    assert used <= HEAP_BUDGET


def test_hid_reports_allocate_nothing(mpvm: MicroPythonVM) -> None:
    """Button reports and LED outputs through the Hid object's own paths (USB callbacks)."""
    fw.load(mpvm)
    mpvm.run(HID_PRELUDE + "import vm_main\napp = vm_main.create()\napp.boot(0)").check()
    mpvm.run("usbd.host_control(bytes((0, 9, 1, 0, 0, 0, 0, 0)))").check()
    code = """
out = hid_dev._out
pending = usbd._pending
counts = [0]
def hot(n):
    for k in range(n):
        hid_dev.gesture(1, 1)  # mute: two reports
        pending.pop(0x83)  # the host took the first (what usbd.host_in does, minus its copy)
        hid_dev.xfer(0x83, True, 2)
        pending.pop(0x83)  # and the second
        hid_dev.xfer(0x83, True, 2)
        out[0] = 2
        out[1] = k & 0x0F
        pending.pop(0x03)  # an LED output report arrived
        hid_dev.xfer(0x03, True, 2)
        counts[0] += 2
hot(5)
gc.collect()
gc.disable()
before = gc.mem_alloc()
hot(500)
after = gc.mem_alloc()
gc.enable()
print(after - before, counts[0])
"""
    allocated, reports = (int(x) for x in mpvm.run("import gc\n" + code).check().split())
    assert reports >= 1000
    assert allocated == 0, f"{allocated} bytes allocated for 1000 reports"
