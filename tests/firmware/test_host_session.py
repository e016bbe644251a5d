"""The daemon's UnitSession (host side, CPython) against this firmware on the VM: HELLO both
ways, STATE shown on the LEDs, a real button press arriving as a ButtonEvent. The transport
steps the unit with the host's clock, so both ends share one time line."""

from __future__ import annotations

import asyncio
import json
import time

from offhook import linkproto as L
from offhook.daemon.unit import UnitSession
from offhook.transport.base import Transport
from offhook.vm import MicroPythonVM
from tests.firmware import fw


class VMTransport(Transport):
    kind = "vm"

    def __init__(self, vm: MicroPythonVM) -> None:
        super().__init__("vm:sim")
        self.vm = vm
        self.started = time.monotonic()
        self.unit_ms = 0

    async def open(self) -> None:
        pass

    def _step(self) -> bytes:
        now = int((time.monotonic() - self.started) * 1000)
        if now > self.unit_ms:
            hexdata = self.vm.run(f"drive([], {self.unit_ms}, {now}, 5)\nout()").check().strip()
            self.unit_ms = now - (now - self.unit_ms) % 5
            return bytes.fromhex(hexdata)
        return b""

    async def read(self) -> bytes:
        while True:
            data = self._step()
            if data:
                return data
            await asyncio.sleep(0.005)

    async def write(self, data: bytes) -> None:
        self.vm.run(f"send({data.hex()!r})").check()

    def close(self) -> None:
        pass


async def _scenario(vm: MicroPythonVM) -> tuple:
    transport = VMTransport(vm)
    session = UnitSession(transport)
    info = await session.connect(timeout=3)
    await session.send_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, L.STATE_MUTED, 0)
    runner = asyncio.create_task(session.run())
    try:
        await asyncio.sleep(0.2)
        lamps = json.loads(vm.run("print(duties())").check())
        vm.run("machine.set_input(3, 0)").check()  # K2: mute, held well past debounce, short of long
        await asyncio.sleep(0.3)
        vm.run("machine.set_input(3, 1)").check()
        event = await asyncio.wait_for(session.events.get(), 2)
        await asyncio.sleep(0.3)
        unit = vm.run("print(app.unit.host, app.unit.refused, app.unit.request_seq)").check().split()
    finally:
        runner.cancel()
    return info, lamps, event, unit


def test_daemon_session_with_firmware(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm, config=b'{"brightness": 100}')
    info, lamps, event, unit = asyncio.run(_scenario(mpvm))
    assert (info.board, info.serial, info.proto) == ("sim", "0ff0514d00000001", L.PROTOCOL_VERSION)
    assert "buttons" in info.caps
    assert lamps == [65535, 65535, 0, 0, 65535, 0, 0]  # hook green, mute red, status red (on call)
    assert (event.button, event.gesture) == (L.BUTTON_MUTE, L.GESTURE_SHORT)
    assert unit == ["1", "0", "-1"]  # still in session; the press was confirmed, not refused
