"""Debounce and gestures (short, long, double press) for active-low buttons, sans-IO.

``update(i, pressed, now_ms)`` is called for every input on every poll; gestures
land in a fixed-size ring read with ``take()``. Nothing here allocates after
construction: state lives in bytearrays/arrays and times are small ints.
"""

from array import array
from time import ticks_diff

from micropython import const

# linkproto numbers under linkproto's names (not imported: this module stays standalone, and the
# hot path inlines const()s); tests/test_one_source.py compares each with linkproto.
_GESTURE_SHORT = const(1)
_GESTURE_LONG = const(2)
_GESTURE_DOUBLE = const(3)

_IDLE = const(0)
_DOWN = const(1)  # first press, not yet long
_WAIT = const(2)  # released, waiting to see whether a second press follows
_DOWN2 = const(3)  # second press of a possible double
_HELD = const(4)  # long already reported, waiting for release


class Gestures:
    def __init__(self, count, debounce_ms=20, long_ms=800, double_ms=300, double_mask=0, queue=16):
        self.count = count
        self.debounce_ms = debounce_ms
        self.long_ms = long_ms
        self.double_ms = double_ms
        self.double_mask = double_mask  # bit i set: input i waits for a double press
        self._raw = bytearray(count)  # last sampled level, 1 = pressed
        self._stable = bytearray(count)  # debounced level
        self._phase = bytearray(count)
        self._changed = array("i", [0] * count)  # when the raw level last changed
        self._mark = array("i", [0] * count)  # when the current phase began
        self._q_code = bytearray(queue)  # input << 2 | gesture
        self._q_ms = array("i", [0] * queue)
        self._q_size = queue
        self._q_head = 0
        self._q_len = 0
        self.dropped = 0  # gestures lost because nobody took them (ring full)
        self.taken_ms = 0  # time of the gesture last returned by take()

    def configure(self, debounce_ms, long_ms, double_ms, double_mask):
        self.debounce_ms = debounce_ms
        self.long_ms = long_ms
        self.double_ms = double_ms
        self.double_mask = double_mask

    def reset(self):
        for i in range(self.count):
            self._raw[i] = 0
            self._stable[i] = 0
            self._phase[i] = _IDLE
        self._q_len = 0

    def is_down(self, i):
        return self._stable[i] == 1

    def update(self, i, pressed, now):
        """One sample of input ``i`` (pressed: 0/1 or bool) at ``now`` (ticks_ms)."""
        level = 1 if pressed else 0
        if level != self._raw[i]:
            self._raw[i] = level
            self._changed[i] = now
        elif level != self._stable[i] and ticks_diff(now, self._changed[i]) >= self.debounce_ms:
            self._stable[i] = level
            self._edge(i, level, now)
        phase = self._phase[i]
        if phase == _DOWN or phase == _DOWN2:
            if ticks_diff(now, self._mark[i]) >= self.long_ms:
                if phase == _DOWN2:
                    self._emit(i, _GESTURE_SHORT, now)  # the first press of the pair was a short one
                self._emit(i, _GESTURE_LONG, now)
                self._phase[i] = _HELD
        elif phase == _WAIT and ticks_diff(now, self._mark[i]) >= self.double_ms:
            self._emit(i, _GESTURE_SHORT, now)
            self._phase[i] = _IDLE

    def _edge(self, i, level, now):
        phase = self._phase[i]
        if level:
            if phase == _IDLE:
                self._phase[i] = _DOWN
                self._mark[i] = now
            elif phase == _WAIT:
                self._phase[i] = _DOWN2
                self._mark[i] = now
        elif phase == _DOWN:
            if self.double_mask & (1 << i):
                self._phase[i] = _WAIT
                self._mark[i] = now
            else:
                self._emit(i, _GESTURE_SHORT, now)
                self._phase[i] = _IDLE
        elif phase == _DOWN2:
            self._emit(i, _GESTURE_DOUBLE, now)
            self._phase[i] = _IDLE
        elif phase == _HELD:
            self._phase[i] = _IDLE

    def _emit(self, i, gesture, now):
        if self._q_len == self._q_size:
            self.dropped += 1
            return
        slot = (self._q_head + self._q_len) % self._q_size
        self._q_code[slot] = (i << 2) | gesture
        self._q_ms[slot] = now
        self._q_len += 1

    def pending(self):
        return self._q_len

    def take(self):
        """Oldest gesture as ``input << 2 | gesture`` (its time in ``taken_ms``), or -1."""
        if not self._q_len:
            return -1
        slot = self._q_head
        self._q_head = (slot + 1) % self._q_size
        self._q_len -= 1
        self.taken_ms = self._q_ms[slot]
        return self._q_code[slot]
