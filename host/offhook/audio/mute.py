"""Privacy mute, enforced on the samples: muted output is exact digital zeros.

A softphone's mute flag can be wrong or ignored; the agent's trust cannot. So the daemon drives
this switch and it acts in the audio stream itself. Muting fades out within ``fade_ms`` and then
writes zeros (bit-exact); un-muting fades back in over ``fade_ms`` so there is no click.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float64]


class PrivacyMute:
    """Thread-safe mute switch applied per frame; :meth:`set_muted` may be called from any thread."""

    def __init__(self, rate: int, fade_ms: float = 5.0, muted: bool = False) -> None:
        self._fade = max(1, int(rate * fade_ms / 1000))
        self._lock = threading.Lock()
        self._muted = muted
        self._gain = 0.0 if muted else 1.0

    @property
    def muted(self) -> bool:
        with self._lock:
            return self._muted

    def set_muted(self, muted: bool) -> None:
        with self._lock:
            self._muted = bool(muted)

    def process(self, frame: Float) -> Float:
        with self._lock:
            muted = self._muted
        target = 0.0 if muted else 1.0
        if self._gain == target:
            return np.zeros_like(frame) if muted else np.asarray(frame, dtype=np.float64)
        step = 1.0 / self._fade
        ramp = self._gain + (step if target > self._gain else -step) * np.arange(1, len(frame) + 1)
        ramp = np.clip(ramp, 0.0, 1.0)
        self._gain = float(ramp[-1])
        out = frame * ramp
        if muted:
            out[ramp == 0.0] = 0.0
        return out
