"""A stand-in desk unit on the far side of a pseudo-terminal, speaking the shared link code.

Used to test the host's transport and session at the transport boundary (the real
firmware on the MicroPython VM is exercised through the simulator's tests).
"""

from __future__ import annotations

import os
import pty
import select
import time
import tty

from offhook import linkproto as L


class PtyUnit:
    def __init__(self, serial: str = "E6614C311B7A8E2F") -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        self._slave = slave
        self.serial = serial
        self.link = L.Link(retry_ms=100, max_tries=3)
        self.frames: list[L.Frame] = []
        self.arrivals: list[tuple[float, L.Frame]] = []  # (monotonic time read, frame)
        self.answer_acks = True

    def now_ms(self) -> int:
        return int(time.monotonic() * 1000)

    def pump(self, seconds: float = 0.05) -> list[L.Frame]:
        """Read what the host sent for up to ``seconds``; answer HELLO like firmware does."""
        got: list[L.Frame] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.01)
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    break
                link_items = self.link.receive(data, self.now_ms())
                if not self.answer_acks:
                    self.link.take_output()  # swallow our ACKs: a unit that went deaf
                read_at = time.monotonic()
                for item in link_items:
                    if isinstance(item, L.Frame):
                        got.append(item)
                        self.arrivals.append((read_at, item))
                        if item.type == L.HELLO:
                            self.send(L.HELLO, L.encode_json(self.hello()))
            self.link.poll(self.now_ms())
            self.flush()
        self.frames.extend(got)
        return got

    def hello(self) -> dict:
        return {"proto": 1, "fw": "0.1.0", "board": "pico", "serial": self.serial, "caps": ["pwm"]}

    def send(self, mtype: int, payload: bytes = b"") -> int:
        seq = self.link.send(mtype, payload, self.now_ms())
        self.flush()
        return seq

    def flush(self) -> None:
        out = self.link.take_output()
        if out and self.answer_acks:
            os.write(self.master, out)

    def press(self, button: int, gesture: int = L.GESTURE_SHORT) -> int:
        return self.send(L.EVENT, L.encode_event(button, gesture, self.now_ms()))

    def states(self) -> list[tuple[int, int, int, int]]:
        return [L.decode_state(f.payload) for f in self.frames if f.type == L.STATE]

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self._slave)
