"""Netstrings (``LEN:DATA,``), the framing of baresip's ctrl_tcp: a bounded, sans-IO codec."""

from __future__ import annotations

MAX_NETSTRING = 64 * 1024  # ctrl_tcp messages are small JSON objects


class NetstringError(ValueError):
    """The peer sent bytes that are not a netstring; the stream cannot be trusted after it."""


def encode(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


class NetstringDecoder:
    """Feed received bytes; get complete payloads.

    Malformed input sets ``error`` (a NetstringError) after returning every payload
    that came before it; the stream cannot be trusted after that point, so later
    feeds return nothing.
    """

    def __init__(self, max_size: int = MAX_NETSTRING) -> None:
        self._buffer = bytearray()
        self._max_size = max_size
        self.error: NetstringError | None = None

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        if self.error is not None:
            return out
        self._buffer.extend(data)
        try:
            self._parse(out)
        except NetstringError as exc:
            self.error = exc
            self._buffer.clear()
        return out

    def _parse(self, out: list[bytes]) -> None:
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                if len(self._buffer) > 10 or (self._buffer and not self._buffer.isdigit()):
                    raise NetstringError(f"bad netstring length prefix {bytes(self._buffer[:12])!r}")
                return
            prefix = bytes(self._buffer[:colon])
            if not prefix.isdigit() or colon > 10:
                raise NetstringError(f"bad netstring length prefix {prefix[:12]!r}")
            length = int(prefix)
            if length > self._max_size:
                raise NetstringError(f"netstring of {length} bytes exceeds {self._max_size}")
            end = colon + 1 + length
            if len(self._buffer) < end + 1:
                return
            if self._buffer[end] != ord(","):
                raise NetstringError("netstring not terminated by ','")
            out.append(bytes(self._buffer[colon + 1 : end]))
            del self._buffer[: end + 1]
