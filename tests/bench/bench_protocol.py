"""Link protocol throughput on CPython and on the MicroPython VM, against USB CDC rates."""

from __future__ import annotations

import time

from offhook import linkproto
from offhook.firmware import LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE
from offhook.vm import MicroPythonVM
from tests.bench.figures import Figure

# What a full-speed USB CDC link carries in practice on an RP2040 (~1 MB/s ceiling of
# 12 Mbit/s bulk; MicroPython's CDC reaches a few hundred KB/s).
CDC_BYTES_PER_S = 1_000_000
FRAMES = 2000


def _stream() -> bytes:
    state = linkproto.encode_state(linkproto.CALL_ACTIVE, linkproto.AGENT_ON_CALL, 1, 10)
    return b"".join(linkproto.encode_frame(linkproto.STATE, i, state, 1) for i in range(FRAMES))


def run() -> list[Figure]:
    stream = _stream()
    started = time.perf_counter()
    decoded = linkproto.Decoder().feed(stream)
    cpython_s = time.perf_counter() - started
    assert len(decoded) == FRAMES
    with MicroPythonVM() as vm:
        vm.put(LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE.read_bytes())
        vm.put("/stream.bin", stream)
        out = vm.run(
            "import linkproto, time\n"
            "data = open('/stream.bin', 'rb').read()\n"
            "t = time.ticks_us()\n"
            "n = len(linkproto.Decoder().feed(data))\n"
            "print(n, time.ticks_diff(time.ticks_us(), t))"
        ).check()
    count, vm_us = (int(x) for x in out.split())
    assert count == FRAMES
    vm_rate = len(stream) / (vm_us / 1e6)
    cpu_rate = len(stream) / cpython_s
    reference = f"USB CDC ~{CDC_BYTES_PER_S / 1e6:.0f} MB/s"
    return [
        Figure(
            "protocol",
            "decode throughput, CPython",
            cpu_rate / 1e6,
            "MB/s",
            reference,
            "> link rate",
            cpu_rate > CDC_BYTES_PER_S,
        ),
        Figure("protocol", "decode throughput, MicroPython VM", vm_rate / 1e3, "KB/s", reference),
        Figure("protocol", "STATE frame size on the wire", len(stream) / FRAMES, "bytes"),
    ]
