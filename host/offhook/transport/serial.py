"""USB CDC serial transport (pyserial): the same code for real units and simulated ptys."""

from __future__ import annotations

import asyncio
import contextlib

import serial

from offhook.transport.base import ThreadedTransport, TransportClosed


class SerialTransport(ThreadedTransport):
    kind = "serial"
    gone_errors = (serial.SerialException, OSError, TypeError, AttributeError)

    def __init__(self, path: str, baudrate: int = 115200) -> None:
        super().__init__(path)
        self.baudrate = baudrate  # ignored by USB CDC, needed by pyserial
        self._port: serial.Serial | None = None

    async def open(self) -> None:
        try:
            port: serial.Serial = await asyncio.to_thread(
                serial.serial_for_url, self.path, baudrate=self.baudrate, timeout=1.0, write_timeout=2, exclusive=True
            )
            # Bytes the unit wrote before we opened the port (a boot HELLO, half a frame) are stale.
            await asyncio.to_thread(port.reset_input_buffer)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportClosed(f"cannot open {self.path}: {exc}") from None
        self._port = port
        self._start_reader()

    def _read_blocking(self) -> bytes:
        port = self._port
        assert port is not None
        return bytes(port.read(max(1, port.in_waiting)))

    async def write(self, data: bytes) -> None:
        if self._port is None or self._closing:
            raise TransportClosed(f"{self.path} is not open")
        try:
            await asyncio.to_thread(self._port.write, data)
        except (serial.SerialException, OSError) as exc:
            raise TransportClosed(f"{self.path}: {exc}") from None

    def close(self) -> None:
        self._closing = True
        if self._port is not None:
            with contextlib.suppress(Exception):
                self._port.close()
        self._stop_reader()
