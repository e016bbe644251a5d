"""Streaming 3:1 resampling between the 48 kHz device rate and the 16 kHz processing rate.

One minimum-phase FIR low-pass (shared by both directions) with the input history kept between
frames, so a stream cut into 10 ms frames resamples exactly like one call on the whole signal.
Minimum phase because this sits twice in the agent's microphone path: a linear-phase filter of
the same stop band delays by 1 ms per pass, this one by 0.11-0.19 ms across the speech band
(measured with ``scipy.signal.group_delay``), and the echo canceller does not mind (the
microphone and its echo reference pass the same filter). Both directions are polyphase: only the
outputs that are kept are computed (the downsampler's every third, the upsampler's without the
stuffed zeros), as sliding dot products (``np.correlate``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.signal import firwin, group_delay, minimum_phase

Float = NDArray[np.float64]
FACTOR = 3
# The minimum-phase half of a 191-tap Kaiser design: flat to 6 kHz, -4 dB at 7.2 kHz, -29 dB at
# 8 kHz (where 16 kHz folds) and below -75 dB from 8.8 kHz, as the 96-tap linear-phase filter it
# replaced (-30 and -83 dB) at the same cost.
_FIR = minimum_phase(firwin(191, 7100, fs=48000, window=("kaiser", 16.0)), method="homomorphic", n_fft=2**16)
TAPS = len(_FIR)  # 96, a multiple of FACTOR
# Delay per pass in 48 kHz samples, taken at 1 kHz (speech's weight); only offline alignment
# (chain.process_signals) uses it.
DELAY_48K = float(group_delay((_FIR, [1.0]), w=[1000.0], fs=48000)[1][0])
# Branch m of the polyphase filter holds taps m, m + 3, ...; reversed, for np.correlate.
_BRANCHES = [_FIR[m::FACTOR][::-1].copy() for m in range(FACTOR)]
_UP_BRANCHES = [FACTOR * b for b in _BRANCHES]
_BRANCH_TAPS = TAPS // FACTOR


class Downsampler:
    def __init__(self) -> None:
        self._history = np.zeros(TAPS - 1)
        self._phase = 0  # index, in the next chunk, of the next 48 kHz sample that is kept

    def process(self, x: Float) -> Float:
        x = np.asarray(x, dtype=np.float64)
        data = np.concatenate((self._history, x))  # data[TAPS - 1 + i] is x[i]
        count = max(0, (len(x) - self._phase + FACTOR - 1) // FACTOR)
        out = np.zeros(count)
        # Output i = phase + 3k is sum_j h[j] x[i - j]; split j = 3q + m: branch m reads data
        # at TAPS - 1 + phase - m - 3q + 3k, an every-third-sample stream.
        for m, taps in enumerate(_BRANCHES):
            start = TAPS - 1 + self._phase - m - FACTOR * (_BRANCH_TAPS - 1)
            stream = data[start : start + FACTOR * (count + _BRANCH_TAPS - 1) : FACTOR]
            out += np.correlate(stream, taps, "valid")
        self._history = data[len(data) - (TAPS - 1) :]
        self._phase = (self._phase - len(x)) % FACTOR
        return out


class Upsampler:
    def __init__(self) -> None:
        self._history = np.zeros(_BRANCH_TAPS - 1)

    def process(self, x: Float) -> Float:
        data = np.concatenate((self._history, np.asarray(x, dtype=np.float64)))
        # Output 3k + m is 3 sum_q h[3q + m] x[k - q]: the stuffed zeros are never multiplied.
        out = np.empty((len(x), FACTOR))
        for m, taps in enumerate(_UP_BRANCHES):
            out[:, m] = np.correlate(data, taps, "valid")
        self._history = data[len(data) - (_BRANCH_TAPS - 1) :]
        return out.ravel()
