"""Simulated ``machine`` module for the MicroPython VM: installed there as /lib/machine.py.

Only what the firmware uses, with the same signatures as on the boards, plus hooks
for tests and the simulator: ``set_input(pin, level)`` drives an input (buttons are
active low: 0 = pressed), ``press_pattern(pin, steps)`` is a finger timed on the unit's own
clock, ``pwm_duty(pin)`` reads back an LED's duty (0..65535),
``WDT.last`` is the watchdog (feeds counted), ``handler`` (None, or a function of no
arguments) is called when an LED's duty changes, so the simulator reads LEDs only then instead of
polling them. Nothing allocates on Pin.value() or PWM.duty_u16() (unless ``handler`` does), so
heap checks in the VM mean the same as on a board.
"""

from time import ticks_diff, ticks_ms

_levels = {}
_pwms = {}
# The simulator's hook: a duty changed (unit.mjs). Named with a name MicroPython already holds in
# ROM: on a board this module is C with its names in ROM, and a new name here would grow the heap's
# qstr pool, which the heap-budget tests (tests/hid/test_heap_hid.py) would count as firmware's.
handler = None
_patterns = {}  # pin id -> [steps, step index, the firmware's last read (-1: none yet), ms held so far]
UNIQUE_ID = b"\x0f\xf0\x51\x4d\x00\x00\x00\x01"  # "sim" unit serial 0ff0514d00000001


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=None, alt=None):
        self.id = id
        if id not in _levels:
            _levels[id] = 1  # a floating input reads high in the simulator
        if pull == Pin.PULL_UP:
            _levels[id] = 1
        elif pull == Pin.PULL_DOWN:
            _levels[id] = 0
        if value is not None:
            _levels[id] = 1 if value else 0

    def value(self, x=None):
        # Levels live in one dict keyed by pin id: every Pin(id) object sees the same pin.
        if x is None:
            if _patterns:
                _follow(self.id)
            return _levels[self.id]
        _levels[self.id] = 1 if x else 0

    def __call__(self, x=None):
        return self.value(x)

    def on(self):
        _levels[self.id] = 1

    def off(self):
        _levels[self.id] = 0


class PWM:
    def __init__(self, dest, *, freq=1000, duty_u16=0, duty_ns=0):
        self.pin = dest
        self._freq = freq
        self._duty = duty_u16
        self.writes = 0
        _pwms[dest.id] = self
        if handler is not None:
            handler()

    def freq(self, value=None):
        if value is None:
            return self._freq
        self._freq = value

    def duty_u16(self, value=None):
        if value is None:
            return self._duty
        changed = value != self._duty
        self._duty = value
        self.writes += 1
        if changed and handler is not None:
            handler()

    def deinit(self):
        self._duty = 0
        if handler is not None:
            handler()


class WDT:
    last = None

    def __init__(self, *, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        WDT.last = self

    def feed(self):
        self.feeds += 1


def unique_id():
    return UNIQUE_ID


def reset():
    raise SystemExit("machine.reset() in the simulator")


def freq(hz=None):
    return 125_000_000


# ---------------------------------------------------------------- test / simulator hooks


def set_input(pin_id, level):
    _patterns.pop(pin_id, None)
    _levels[pin_id] = 1 if level else 0


def press_pattern(pin_id, steps):
    """A finger on a key: ``steps`` is [(level, ms), ...]; each level lasts ``ms`` of the unit's
    own scanning, and the last one stays. Time counts between the firmware's reads, at most
    _MAX_READ_GAP_MS per read: a VM that the host starved of CPU for a while sees the level
    for as many scans as a running board would. (Levels set from outside on the host's clock
    could fall between two scans, or last one scan, and a press was lost.)"""
    _levels[pin_id] = 1 if steps[0][0] else 0
    _patterns[pin_id] = [steps, 0, -1, 0]


_MAX_READ_GAP_MS = 10  # two scan periods (the firmware scans every 5 ms)


def _follow(pin_id):
    state = _patterns.get(pin_id)
    if state is None:
        return
    steps, index, last_read, held = state
    now = ticks_ms()
    if last_read >= 0:
        held += min(ticks_diff(now, last_read), _MAX_READ_GAP_MS)
    state[2] = now
    state[3] = held
    if held >= steps[index][1]:
        index += 1
        _levels[pin_id] = 1 if steps[index][0] else 0
        if index == len(steps) - 1:
            del _patterns[pin_id]
        else:
            state[1] = index
            state[3] = 0  # this read is the new level's first


def pwm_duty(pin_id):
    return _pwms[pin_id]._duty
