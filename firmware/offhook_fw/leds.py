"""Render a scene (pattern + colour per lamp) to PWM duty values, with gamma correction.

Integer lookup tables only: floats allocate on the RP2040, so the gamma and breathing
curves are computed once at import and the per-frame path is table lookups and
integer arithmetic into a preallocated array('H') of duty values.
"""

import math
from array import array

from micropython import const

COMP_R = const(0)
COMP_G = const(1)
COMP_B = const(2)
COMP_MONO = const(3)  # one LED of fixed colour: brightest component of the lamp colour

_BREATH_STEPS = const(64)
_NLAMPS = const(5)  # = scenes.NLAMPS
# Pattern numbers, = scenes._OFF ... scenes._FLASH (checked by tests/firmware).
_OFF = const(0)
_SOLID = const(1)
_DIM = const(2)
_BLINK = const(3)
_FAST = const(4)
_RING = const(5)
_BREATHE = const(6)
_WAITING = const(7)
_REMIND = const(8)
_WINK = const(9)
_PAIR = const(10)
_RAMP = const(11)
_NOTCONF = const(12)
_FLASH = const(13)


def _gamma_table(gamma=2.2):
    # 256 perceptual levels -> 16-bit duty; level 0 is fully off, 255 fully on.
    return array("H", [int(65535 * math.pow(i / 255, gamma) + 0.5) for i in range(256)])


def _breath_table():
    # One breath: 0 -> 255 -> 0 along a raised cosine, in _BREATH_STEPS steps.
    return bytearray(int(127.5 - 127.5 * math.cos(2 * math.pi * i / _BREATH_STEPS) + 0.5) for i in range(_BREATH_STEPS))


GAMMA = _gamma_table()
BREATH = _breath_table()


def level(pattern, t):
    """Brightness 0..255 of ``pattern`` ``t`` ms after it started."""
    if pattern == _OFF:
        return 0
    if pattern == _SOLID or pattern == _FLASH:
        return 255
    if pattern == _DIM:
        return 42
    if pattern == _BLINK:
        return 255 if t % 1000 < 500 else 0
    if pattern == _FAST:
        return 255 if t % 250 < 125 else 0
    if pattern == _RING:
        t %= 2000
        return 255 if t < 300 or 450 <= t < 750 else 0
    if pattern == _BREATHE:
        return BREATH[(t % 4000) * _BREATH_STEPS // 4000]
    if pattern == _WAITING:
        t %= 1500
        return 255 if t < 100 or 250 <= t < 350 else 0
    if pattern == _REMIND:
        t %= 2000
        return 255 if t < 600 and t % 200 < 100 else 0
    if pattern == _WINK:
        return 255 if t % 2000 < 80 else 0
    if pattern == _PAIR:
        return BREATH[(t % 1000) * _BREATH_STEPS // 1000]
    if pattern == _RAMP:
        return (t % 1000) * 255 // 1000
    if pattern == _NOTCONF:
        return 255 if t < 600 and t % 200 < 100 else 0
    return 0


class Renderer:
    """``channels``: one (lamp, component) pair per PWM channel, as a flat bytes object."""

    def __init__(self, channels, brightness=100):
        self.count = len(channels) // 2
        self._channels = bytes(channels)
        self.brightness = brightness  # percent, 1..100
        self.duty = array("H", [0] * self.count)
        self._shown = bytearray(_NLAMPS)  # pattern each lamp showed last frame
        self._start = array("i", [0] * _NLAMPS)  # when that pattern began (patterns start at phase 0)

    def frame(self, scene, now):
        """Compute ``self.duty`` for ``scene`` at ``now`` (ticks_ms)."""
        shown = self._shown
        start = self._start
        for lamp in range(_NLAMPS):
            pattern = scene[lamp * 4]
            if pattern != shown[lamp]:
                shown[lamp] = pattern
                start[lamp] = now
        channels = self._channels
        bright = self.brightness
        for ch in range(self.count):
            lamp = channels[2 * ch]
            comp = channels[2 * ch + 1]
            base = lamp * 4
            if comp == COMP_MONO:
                colour = max(scene[base + 1], scene[base + 2], scene[base + 3])
            else:
                colour = scene[base + 1 + comp]
            # ticks_ms wraps at 2**30: mask the age the same way as linkproto.elapsed_ms.
            lit = level(scene[base], (now - start[lamp]) & 0x3FFFFFFF) * colour // 255
            self.duty[ch] = GAMMA[lit * bright // 100]
        return self.duty
