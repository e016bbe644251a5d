"""The application: wires gestures, unit state, scenes, LEDs and the link session to a board.

``App.step(now)`` runs one whole cycle with an explicit time (tests, the simulator);
``App.run()`` runs the same pieces as asyncio tasks on real time, each supervised:
a task that raises is logged over the link and restarted, and the watchdog is fed only
while every task keeps beating, so a hang or a crash loop resets the board.
"""

import asyncio
from array import array
from time import ticks_diff, ticks_ms

import linkproto as L
from micropython import const

from offhook_fw import config as C
from offhook_fw import gestures, leds, scenes, session, unit

SCAN_MS = const(5)  # button poll period: well under the 20 ms debounce
FRAME_MS = const(20)  # LED frame period (50 Hz)
LINK_MS = const(10)
WATCHDOG_MS = const(1000)  # feed period; the board's WDT timeout is several times longer
STALL_MS = const(3000)  # a task silent this long is stuck: stop feeding the watchdog
CRASH_LIMIT = const(5)  # crashes within CRASH_WINDOW_MS before we let the watchdog reset us
CRASH_WINDOW_MS = const(10000)
RESTART_MS = const(100)

_BUTTONS = const(0)
_LEDS = const(1)
_LINK = const(2)
TASK_NAMES = ("buttons", "leds", "link")


class ConfigStore:
    """The live config, its file, and the reason it fell back to defaults (or None)."""

    def __init__(self, path, on_change):
        self.path = path
        self.config, self.error = C.load(path)
        self._on_change = on_change

    def update(self, changes):
        """Validate, persist and apply ``changes``; returns None or the refusal reason."""
        new, reason = C.validate(changes, self.config)
        if reason:
            return reason
        try:
            C.save(new, self.path)
        except OSError as exc:
            return "could not save config: %s" % exc
        self.config = new
        self.error = None
        self._on_change()
        return None


class App:
    def __init__(self, board, hw, config_path=C.PATH, hid=None):
        self.board = board
        self.hw = hw
        self.unit = unit.Unit()
        self.inputs = hw.inputs
        self.pwms = hw.pwms
        self.gestures = gestures.Gestures(len(hw.inputs))
        self.renderer = leds.Renderer(board.LED_CHANNELS)
        self.scene = bytearray(scenes.NLAMPS * 4)
        self._written = array("i", [-1] * len(hw.pwms))
        self.input_buttons = b""
        self.store = ConfigStore(config_path, self.apply_config)
        caps = list(board.CAPS)
        caps.append("update_resume")  # session.py: UPDATE_STATUS says where an update resumes
        link = hw.link
        self.hid = hid  # offhook_fw.hid.Hid when usb_setup configured USB HID (boot.py), else None
        if hid is not None:
            hid.unit = self.unit  # shows the softphone's LED outputs
            hid.cdc = link
            link = hid  # CDC and HID vendor reports as one stream
            caps.append("usb_hid")
        identity = {"board": board.NAME, "serial": hw.serial, "caps": caps}
        self.session = session.Session(link, self.unit, identity, self.store)
        self.apply_config()
        self.beats = array("i", [0] * len(TASK_NAMES))
        self.crashes = 0
        self._crash_count = 0
        self._crash_window = 0

    def apply_config(self):
        cfg = self.store.config
        self.gestures.configure(cfg["debounce_ms"], cfg["long_press_ms"], cfg["double_press_ms"], C.double_mask(cfg))
        self.renderer.brightness = cfg["brightness"]
        self.input_buttons = C.input_buttons(cfg)

    def boot(self, now):
        self.session.start(now)
        if self.store.error:
            self.session.log(L.LOG_WARNING, self.store.error, now)
        self.session.flush()

    # ------------------------------------------------------------ the cycle, explicit time

    def scan(self, now):
        """Hot path: sample every button (active low) into the gesture machine. No allocation."""
        inputs = self.inputs
        g = self.gestures
        for i in range(len(inputs)):
            g.update(i, inputs[i].value() == 0, now)

    def dispatch(self, now):
        """Send each recognised gesture as an EVENT and flash "press received"."""
        g = self.gestures
        if not g.pending():
            return
        while True:
            code = g.take()
            if code < 0:
                break
            button = self.input_buttons[code >> 2]
            if button == 255:
                continue
            hid = self.hid
            if hid is not None and hid.gesture(button, code & 3) and not self.unit.host:
                # A softphone took it over USB HID and no daemon holds the link: nobody to ask.
                self.unit.pressed(0, now)
                self.unit.confirmed(0)
                continue
            self.unit.pressed(self.session.event(button, code & 3, g.taken_ms), now)
        self.session.flush()  # out now, not at the link task's next turn

    def draw(self, now):
        """Hot path: scene from the displayed state, PWM duty for this frame. No allocation."""
        self.unit.tick(now)
        scenes.compose(self.unit, self.scene)
        duty = self.renderer.frame(self.scene, now)
        written = self._written
        pwms = self.pwms
        for ch in range(len(pwms)):
            value = duty[ch]
            if value != written[ch]:
                pwms[ch].duty_u16(value)
                written[ch] = value

    def step(self, now):
        self.scan(now)
        self.dispatch(now)
        self.session.step(now)
        self.draw(now)

    # ------------------------------------------------------------ asyncio tasks, real time

    async def _buttons(self):
        while True:
            now = ticks_ms()
            self.scan(now)
            self.dispatch(now)
            self.beats[_BUTTONS] = now
            await asyncio.sleep_ms(SCAN_MS)

    async def _leds(self):
        while True:
            now = ticks_ms()
            self.draw(now)
            self.beats[_LEDS] = now
            await asyncio.sleep_ms(FRAME_MS)

    async def _link(self):
        unit = self.unit
        while True:
            now = ticks_ms()
            before = unit.changes
            self.session.step(now)
            if unit.changes != before:
                self.draw(now)  # show a new STATE now, not at the next LED frame (up to 20 ms later)
            self.beats[_LINK] = now
            await asyncio.sleep_ms(LINK_MS)

    async def _supervise(self, index):
        body = (self._buttons, self._leds, self._link)[index]
        while True:
            try:
                await body()
            except Exception as exc:  # any crash: logged over the link, task restarted
                now = ticks_ms()
                self.crashes += 1
                if ticks_diff(now, self._crash_window) > CRASH_WINDOW_MS:
                    self._crash_window = now
                    self._crash_count = 0
                self._crash_count += 1
                self.session.log_exception("task " + TASK_NAMES[index], exc, now)
                await asyncio.sleep_ms(RESTART_MS)

    def healthy(self, now):
        if self._crash_count >= CRASH_LIMIT and ticks_diff(now, self._crash_window) <= CRASH_WINDOW_MS:
            return False
        for i in range(len(TASK_NAMES)):
            if ticks_diff(now, self.beats[i]) > STALL_MS:
                return False
        return True

    async def _watchdog(self, wdt):
        while True:
            if self.healthy(ticks_ms()):
                wdt.feed()
            await asyncio.sleep_ms(WATCHDOG_MS)

    async def run(self):
        try:
            now = ticks_ms()
            for i in range(len(TASK_NAMES)):
                self.beats[i] = now
            self.boot(now)
            tasks = [asyncio.create_task(self._supervise(i)) for i in range(len(TASK_NAMES))]
            wdt = self.hw.start_watchdog()
            if wdt is not None:
                tasks.append(asyncio.create_task(self._watchdog(wdt)))
            await asyncio.gather(*tasks)
        except Exception as exc:
            # Outside any supervised task: report it on the link (never as a traceback on
            # stdout, which is the link) and start again from a clean reset.
            self.session.log_exception("firmware", exc, ticks_ms())
            self.session.flush()
            await asyncio.sleep_ms(RESTART_MS)
            self.hw.reset()


def create(board_name=None, config_path=C.PATH):
    """Load the board (by name, or the one this runtime is), set it up, build the App."""
    import boards

    board = boards.load(board_name)
    return App(board, boards.Hardware(board), config_path, _usb_hid())


def _usb_hid():
    """The HID interface boot.py set up (usb_setup.configure()), or None; imports nothing new."""
    import sys

    hid = sys.modules.get("offhook_fw.hid")
    return getattr(hid, "DEVICE", None) if hid is not None else None


async def main(board_name=None, config_path=C.PATH):
    """Everything the unit runs; the same on every board. Never returns."""
    await create(board_name, config_path).run()
