"""The transport interface: a byte pipe to one desk unit, opened by path."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading


class TransportClosed(ConnectionError):
    """The unit went away (unplugged, reset, port closed)."""


class Transport(abc.ABC):
    kind: str = ""

    def __init__(self, path: str) -> None:
        self.path = path

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def read(self) -> bytes:
        """Some bytes (waits for at least one); raises TransportClosed when the unit is gone."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Raises TransportClosed when the unit is gone."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"


class ThreadedTransport(Transport):
    """A transport whose blocking reads run in one thread per device (the same on Windows,
    macOS and Linux); bytes reach the event loop through a queue. Subclasses implement
    ``_read_blocking`` (returns b"" on a timeout) and list the exceptions that mean "gone"."""

    gone_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._thread: threading.Thread | None = None
        self._closing = False

    @abc.abstractmethod
    def _read_blocking(self) -> bytes: ...

    def _start_reader(self) -> None:
        loop = asyncio.get_running_loop()
        self._closing = False
        self._thread = threading.Thread(target=self._reader, args=(loop,), name=f"{self.kind} {self.path}", daemon=True)
        self._thread.start()

    def _reader(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while not self._closing:
                data = self._read_blocking()
                if data:
                    loop.call_soon_threadsafe(self._queue.put_nowait, data)
        except self.gone_errors:
            pass  # unplugged or closed under us
        except RuntimeError:
            return  # the event loop is gone: nobody is listening any more
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def read(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            self._queue.put_nowait(None)  # every later read sees the close too
            raise TransportClosed(f"{self.kind} {self.path} closed")
        return data

    def _stop_reader(self) -> None:
        self._closing = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)
