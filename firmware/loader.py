"""Safe mode: no application slot runs. The minimal loader shows the safe-mode scene,
answers HELLO (``safe_mode``: true) and accepts UPDATE only; everything else is refused.

Outside the slots and never updated over the link, like boot.py; it reads the same key
store (/keys.json) as the application, so a rotated key reaches it too.
"""

import asyncio
from time import ticks_ms

import bootsel
import linkproto as L
import updater

_UPDATES = (L.UPDATE_BEGIN, L.UPDATE_CHUNK, L.UPDATE_COMMIT, L.UPDATE_ABORT)


class Loader:
    def __init__(self, board, hw):
        self.board = board
        self.hw = hw
        self.link = L.Link(retry_ms=250, max_tries=4)
        self.version = bootsel.read_state().get("version") or "0.0.0"
        self.reason = (bootsel.BOOT or ("safe", "safe mode"))[1]
        self.receiver = updater.Receiver(board.NAME, self.version, self._send)
        self._now = 0

    def _send(self, mtype, payload):
        try:
            self.link.send(mtype, payload, self._now)
        except ValueError:
            pass

    def hello(self):
        hello = {"proto": L.PROTOCOL_VERSION, "fw": self.version, "board": self.board.NAME, "serial": self.hw.serial}
        hello.update({"caps": ["update"], "safe_mode": True, "slot": "safe", "health": "safe", "reason": self.reason})
        self._send(L.HELLO, L.encode_json(hello))

    def step(self, now):
        self._now = now
        data = self.hw.link.read()
        if data:
            for frame in self.link.receive(data, now):
                if isinstance(frame, L.Frame):
                    self.handle(frame)
        self.link.poll(now)
        self.link.take_failed()
        self.receiver.poll(False)
        self.flush()

    def flush(self):
        out = self.link.take_output()
        if out:
            self.hw.link.write(out)

    def handle(self, frame):
        t = frame.type
        if t == L.HELLO:
            self.flush()  # the ACK, before the session restarts
            self.link.reset()
            self.hello()
        elif t in _UPDATES:
            reason = self.receiver.handle(frame, False)
            if reason:
                self.link.nack(frame, L.ERR_REFUSED, reason)
        elif t == L.PING:
            self._send(L.PONG, frame.payload)
        elif t not in (L.ACK, L.NACK, L.LOG, L.PONG):
            self.link.nack(frame, L.ERR_REFUSED, "safe mode: only HELLO and UPDATE")


def _painter(board, hw):
    """The safe-mode scene with the factory image's scenes and LEDs, or nothing if absent."""
    try:
        from offhook_fw import leds, scenes, unit
    except ImportError:
        return None
    shown = unit.Unit()
    shown.safe_mode = 1
    scene = bytearray(scenes.NLAMPS * 4)
    renderer = leds.Renderer(board.LED_CHANNELS)

    def paint(now):
        scenes.compose(shown, scene)
        duty = renderer.frame(scene, now)
        for ch in range(len(hw.pwms)):
            hw.pwms[ch].duty_u16(duty[ch])

    return paint


async def main(board_name=None):
    import boards

    board = boards.load(board_name)
    hw = boards.Hardware(board)
    loader = Loader(board, hw)
    paint = _painter(board, hw)
    loader.hello()
    loader.flush()
    while True:
        now = ticks_ms()
        loader.step(now)
        if paint is not None:
            paint(now)
        if loader.receiver.reboot:
            await asyncio.sleep_ms(300)
            loader.step(ticks_ms())
            hw.reset()
        await asyncio.sleep_ms(10)
