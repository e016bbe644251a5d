"""The link over USB CDC: the board's stdin/stdout, raw bytes, never blocking on read.

kbd_intr(-1) (in each board's setup) makes 0x03 plain data instead of Ctrl-C. Nothing
else may print: stdout is the link, so a stray print() corrupts a frame (the
protocol's CRC drops it and the sender retries).
"""

import select
import sys


class CdcStream:
    def __init__(self):
        self._in = sys.stdin.buffer  # type: ignore[attr-defined]
        self._out = sys.stdout.buffer  # type: ignore[attr-defined]
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._buf = bytearray(64)

    def read(self):
        """Whatever has arrived (up to 64 bytes), or None."""
        n = 0
        while n < len(self._buf) and self._poll.poll(0):
            byte = self._in.read(1)
            if not byte:
                break
            self._buf[n] = byte[0]
            n += 1
        return bytes(self._buf[:n]) if n else None

    def write(self, data):
        self._out.write(data)
