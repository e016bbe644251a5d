"""Streaming 3:1 resampling between the 48 kHz device rate and the 16 kHz processing rate.

One linear-phase FIR low-pass (shared by both directions) with its filter state kept between
frames, so a stream cut into 10 ms frames resamples exactly like one call on the whole signal.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.signal import firwin, lfilter

Float = NDArray[np.float64]
FACTOR = 3
TAPS = 96
_FIR = firwin(TAPS, 7200, fs=48000, window=("kaiser", 8.0))
DELAY_48K = (TAPS - 1) / 2  # group delay in 48 kHz samples, per pass


class Downsampler:
    def __init__(self) -> None:
        self._state = np.zeros(TAPS - 1)
        self._phase = 0

    def process(self, x: Float) -> Float:
        y, self._state = lfilter(_FIR, [1.0], np.asarray(x, dtype=np.float64), zi=self._state)
        out = y[self._phase :: FACTOR]
        self._phase = (self._phase - len(x)) % FACTOR
        return out


class Upsampler:
    def __init__(self) -> None:
        self._state = np.zeros(TAPS - 1)

    def process(self, x: Float) -> Float:
        stuffed = np.zeros(len(x) * FACTOR)
        stuffed[::FACTOR] = x
        y, self._state = lfilter(_FIR * FACTOR, [1.0], stuffed, zi=self._state)
        return y
