"""Board layer: the only code that knows pin numbers.

Each board module (pico.py, esp32s3.py; sim.py in the simulator) defines plain data:
NAME, BUTTON_PINS (inputs K1..K7, active low with pull-ups), LED_PINS and
LED_CHANNELS (one (lamp, component) pair per PWM output, see offhook_fw.leds),
PWM_FREQ, WDT_MS (0: none), SAFE_MODE_INPUT, CAPS; plus ``setup()`` and ``link()``.
``Hardware(board)`` builds the machine objects from that data.
"""

import sys

import machine

_BY_PLATFORM = {"rp2": "pico", "esp32": "esp32s3", "webassembly": "sim"}


def load(name=None):
    """The board module by name, or the one matching this runtime's sys.platform."""
    if name is None:
        name = _BY_PLATFORM.get(sys.platform)
        if name is None:
            raise ValueError("no board for platform %s" % sys.platform)
    return __import__("boards." + name, None, None, [name])


class Hardware:
    def __init__(self, board):
        self.board = board
        board.setup()
        self.inputs = [machine.Pin(pin, machine.Pin.IN, machine.Pin.PULL_UP) for pin in board.BUTTON_PINS]
        self.pwms = [machine.PWM(machine.Pin(pin), freq=board.PWM_FREQ, duty_u16=0) for pin in board.LED_PINS]
        self.link = board.link()
        self.serial = "".join("%02x" % b for b in machine.unique_id())
        self.watchdog = None

    def start_watchdog(self):
        """Start the hardware watchdog (cannot be stopped once started), or None."""
        if self.board.WDT_MS and self.watchdog is None:
            self.watchdog = machine.WDT(timeout=self.board.WDT_MS)
        return self.watchdog

    def reset(self):
        machine.reset()

    def safe_mode_held(self):
        """The safe-mode button held at power-on (read by the boot loader, issue 8)."""
        return self.inputs[self.board.SAFE_MODE_INPUT].value() == 0
