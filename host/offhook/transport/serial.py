"""USB CDC serial transport (pyserial): the same code for real units and simulated ptys.

pyserial's blocking reads run in one reader thread per port (works on Windows,
macOS and Linux alike); bytes reach the event loop through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import serial

from offhook.transport.base import Transport, TransportClosed


class SerialTransport(Transport):
    kind = "serial"

    def __init__(self, path: str, baudrate: int = 115200) -> None:
        super().__init__(path)
        self.baudrate = baudrate  # ignored by USB CDC, needed by pyserial
        self._port: serial.Serial | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        self._closing = False

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            port: serial.Serial = await asyncio.to_thread(
                serial.serial_for_url, self.path, baudrate=self.baudrate, timeout=1.0, write_timeout=2, exclusive=True
            )
            # Bytes the unit wrote before we opened the port (a boot HELLO, half a frame) are stale.
            await asyncio.to_thread(port.reset_input_buffer)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise TransportClosed(f"cannot open {self.path}: {exc}") from None
        self._port = port
        self._thread = threading.Thread(target=self._reader, args=(loop,), name=f"serial {self.path}", daemon=True)
        self._thread.start()

    def _reader(self, loop: asyncio.AbstractEventLoop) -> None:
        port = self._port
        assert port is not None
        try:
            while not self._closing:
                data = port.read(max(1, port.in_waiting))
                if data:
                    loop.call_soon_threadsafe(self._queue.put_nowait, data)
        except (serial.SerialException, OSError, TypeError, AttributeError):
            pass  # unplugged or closed under us
        except RuntimeError:
            return  # the event loop is gone: nobody is listening any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def read(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            self._queue.put_nowait(None)  # every later read sees the close too
            raise TransportClosed(f"{self.path} closed")
        return data

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
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)
