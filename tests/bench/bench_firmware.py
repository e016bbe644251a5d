"""Desk-unit firmware on the MicroPython VM: heap after boot, bundle size, hot-path allocation,
and event latency from a simulated button edge to the EVENT bytes on the link."""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from offhook.firmware import device_files, vm_files
from offhook.vm import MicroPythonVM
from tests.bench.figures import Figure
from tests.firmware import fw
from tests.firmware.test_heap import HOT_PATH, heap_after_boot

HEAP_GOAL = 48 * 1024
PRESSES = 100

# Real time, real asyncio tasks: release the hook button, note ticks_us; the link stream's
# write() notes when the EVENT's bytes go out. A VM-side host end ACKs so nothing piles up.
LATENCY = f"""
import asyncio, time
app = vm_main.create()
host = L.Link()
released = [0]
lat = []
real_write = sim.LINK.write

def timed_write(data):
    if released[0]:
        for item in host.receive(bytes(data)):
            if isinstance(item, L.Frame) and item.type == L.EVENT:
                lat.append(time.ticks_diff(time.ticks_us(), released[0]))
                released[0] = 0
    else:
        host.receive(bytes(data))
    sim.LINK.host_write(host.take_output())
    real_write(data)

sim.LINK.write = timed_write
task = asyncio.create_task(app.run())
await asyncio.sleep_ms(50)
for i in range({PRESSES}):
    machine.set_input(2, 0)
    await asyncio.sleep_ms(40)
    machine.set_input(2, 1)
    released[0] = time.ticks_us()
    await asyncio.sleep_ms(60 + i % 7)
    sim.LINK.host_read()
task.cancel()
await asyncio.sleep_ms(0)
t = time.ticks_us()
for k in range(1000):
    app.step(k)
step_us = time.ticks_diff(time.ticks_us(), t) / 1000
print(step_us, lat)
"""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run() -> list[Figure]:
    figures = []
    with MicroPythonVM() as vm, tempfile.TemporaryDirectory() as tmp:
        bundle = fw.compiled_files(device_files(), Path(tmp))
        size = sum(len(data) for data in bundle.values())
        used = heap_after_boot(vm, fw.compiled_files(vm_files(), Path(tmp)))
        vm.reset()
        fw.boot(vm)
        allocated = int(vm.run(HOT_PATH).check().split()[0])
        vm.reset()
        fw.load(vm)
        out = vm.run(fw.VM_PRELUDE + LATENCY, is_async=True).check()
    step_us, latencies = out.split(" ", 1)
    ms = [us / 1000 for us in json.loads(latencies)]
    lost = PRESSES - len(ms)
    path = "debounce 20 ms + 5 ms scan period"
    figures += [
        Figure(
            "firmware",
            "heap after boot (.mpy, sim board)",
            used / 1024,
            "KB",
            "RP2040 heap ~190 KB",
            "<= 48 KB",
            used <= HEAP_GOAL,
        ),
        Figure("firmware", "bundle size (.mpy + main/boot)", size, "bytes", f"{len(bundle)} files"),
        Figure(
            "firmware",
            "hot path allocation, 1000 presses + frames",
            allocated,
            "bytes",
            "gc disabled",
            "0 bytes",
            allocated == 0,
        ),
        Figure("firmware", "event latency p50 (release edge -> EVENT bytes)", statistics.median(ms), "ms", path),
        Figure(
            "firmware",
            "event latency p99",
            _percentile(ms, 0.99),
            "ms",
            path,
            "< 100 ms",
            _percentile(ms, 0.99) < 100 and lost == 0,
        ),
        Figure("firmware", "app.step() cost in the VM", float(step_us), "us", "5 ms scan period"),
    ]
    return figures
