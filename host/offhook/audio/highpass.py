"""High-pass filter at the head of the chain: takes out HVAC rumble, desk thumps and DC.

Below about 80 Hz a headset microphone picks up nothing of the agent's voice that a call can
carry, but an office's air handling puts most of its noise power there. Every later stage does
better without it: the noise suppressor's -15 dB floor caps what it can take from loud rumble
bins, and the gate's level detector would track the rumble instead of the room. Voice chains do
the same (WebRTC's capture high-pass, SpeexDSP's DC notch).

A second-order Butterworth section, streaming. Digital zeros (a muted source) stay exact zeros:
such a frame is passed as it is and the filter's memory is cleared, so no tail leaks out of it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.signal import butter, lfilter

from offhook.audio import PROCESS_RATE

Float = NDArray[np.float64]
CUTOFF_HZ = 80.0


class HighPass:
    def __init__(self, cutoff_hz: float = CUTOFF_HZ, rate: int = PROCESS_RATE) -> None:
        self._b, self._a = butter(2, cutoff_hz, "highpass", fs=rate)
        self._state = np.zeros(2)

    def process(self, frame: Float) -> Float:
        if not frame.any():
            self._state[:] = 0.0
            return frame
        out, self._state = lfilter(self._b, self._a, frame, zi=self._state)
        return np.asarray(out, dtype=np.float64)
