"""16-bit little-endian PCM <-> float64 samples in [-1, 1]: the one conversion every audio edge
(WAV files, PulseAudio, PortAudio) uses."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float64]


def decode(data: bytes) -> Float:
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0


def encode(samples: Float) -> bytes:
    """Round and clip to the representable range (a full-scale +1.0 becomes 32767)."""
    return np.clip(np.round(np.asarray(samples) * 32768.0), -32768, 32767).astype("<i2").tobytes()
