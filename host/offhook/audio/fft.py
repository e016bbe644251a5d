"""Real FFTs along the last axis, with less per-call overhead than ``numpy.fft``.

The echo canceller makes seven FFT calls per 10 ms frame, each on one to four rows of 320
samples. At that size ``numpy.fft``'s Python wrapper (argument checks, norm handling, output
allocation) costs more than the transform itself: 12-14 us against 6 us for the pocketfft
gufuncs it calls (numpy 2.x, measured here). This module calls those gufuncs directly, with the
results bit-identical to ``numpy.fft.rfft``/``irfft``, and falls back to ``numpy.fft`` where a
numpy release no longer has them (tests/audio/test_fft.py checks both paths agree).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

try:  # private to numpy, hence the fallback below
    from numpy.fft import _pocketfft_umath as _pocketfft  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the numpy release
    _pocketfft = None

Float = NDArray[np.float64]
Complex = NDArray[np.complex128]


def rfft(frames: Float) -> Complex:
    """``numpy.fft.rfft(frames, axis=-1)`` for an even length."""
    size = frames.shape[-1]
    if _pocketfft is None or size % 2:
        return np.fft.rfft(frames)
    out = np.empty((*frames.shape[:-1], size // 2 + 1), dtype=np.complex128)
    return _pocketfft.rfft_n_even(frames, 1.0, out=out)


def irfft(spectra: Complex, size: int) -> Float:
    """``numpy.fft.irfft(spectra, size, axis=-1)``."""
    if _pocketfft is None or spectra.shape[-1] != size // 2 + 1:
        return np.fft.irfft(spectra, size)
    return _pocketfft.irfft(spectra, 1.0 / size, out=np.empty((*spectra.shape[:-1], size)))
