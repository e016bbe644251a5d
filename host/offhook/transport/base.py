"""The transport interface: a byte pipe to one desk unit, opened by path."""

from __future__ import annotations

import abc


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
