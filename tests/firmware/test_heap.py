"""Heap on the VM (RP2040 budget): zero allocation on the button and LED hot path, and the
heap in use after boot (printed; run pytest with -s to see it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from offhook.firmware import vm_files
from offhook.vm import MicroPythonVM
from tests.firmware import fw

# A regression guard; the goal (48 KB) is reported by `make bench`.
HEAP_AFTER_BOOT_LIMIT = 56 * 1024

# 1000 short presses on K1..K4 (no double-press wait) with contact bounce, each followed by
# a new STATE (scenes change) and LED frames every 20 ms; gestures are taken from the ring
# as the link task would. gc is disabled so every allocated byte shows in mem_alloc().
HOT_PATH = """
from array import array
counts = array("i", [0, 0])
before = after = 0

def hot(n, t):
    g = app.gestures
    u = app.unit
    taken = 0
    frames = 0
    for k in range(n):
        pin = _PINS[k & 3]
        for level in (0, 1, 0, 1, 0):  # bounce, then pressed
            machine.set_input(pin, level)
            app.scan(t)
            t += 1
        for _ in range(8):
            app.scan(t)
            t += 5
        machine.set_input(pin, 1)
        for _ in range(8):
            app.scan(t)
            if t % 20 < 5:
                app.draw(t)
                frames += 1
            t += 5
        while g.take() >= 0:
            taken += 1
        u.apply_state(k % 5, k % 5, k & 0xFF, k)
        u.pressed(k, t)
        for _ in range(3):
            app.draw(t)
            frames += 1
            t += 20
    counts[0] = taken
    counts[1] = frames

gc.collect()
gc.disable()
before = gc.mem_alloc()
hot(1000, 100000)
after = gc.mem_alloc()
gc.enable()
print(after - before, counts[0], counts[1])
"""


def test_hot_path_allocates_nothing(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm)
    allocated, taken, frames = (int(x) for x in mpvm.run(HOT_PATH).check().split())
    assert taken == 1000 and frames >= 3000
    assert allocated == 0, f"{allocated} bytes allocated on the hot path"


def heap_after_boot(vm: MicroPythonVM, files: dict[str, bytes]) -> int:
    """Bytes in use after boot (collected in a separate run: the VM's GC cannot free garbage
    still referenced from the stack of the run that made it)."""
    vm.put_files(files)
    empty = int(vm.run("import gc\ngc.collect()\nprint(gc.mem_alloc())").check())
    vm.run("import vm_main\napp = vm_main.create()\napp.boot(0)").check()
    booted = int(vm.run("gc.collect()\nprint(gc.mem_alloc())").check())
    return booted - empty


@pytest.mark.parametrize("form", ["mpy", "py"])
def test_heap_after_boot(mpvm: MicroPythonVM, form: str, tmp_path: Path) -> None:
    sources = vm_files()
    if form == "mpy":
        files = fw.compiled_files(sources, tmp_path)
    else:
        files = {path: source.read_bytes() for path, source in sources.items()}
    used = heap_after_boot(mpvm, files)
    print(f"\nfirmware heap after boot ({form}, simulated board): {used} bytes ({used / 1024:.1f} KB)")
    if form == "mpy":
        assert used <= HEAP_AFTER_BOOT_LIMIT
