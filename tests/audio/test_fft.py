"""offhook.audio.fft gives numpy.fft's results exactly, through the gufuncs and the fallback."""

from __future__ import annotations

import numpy as np
import pytest

from offhook.audio import fft


@pytest.fixture(params=["gufunc", "fallback"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "fallback":
        monkeypatch.setattr(fft, "_pocketfft", None)
    else:
        assert fft._pocketfft is not None, "numpy's pocketfft gufuncs are gone: the fast path never runs"
    return str(request.param)


@pytest.mark.parametrize("shape", [(320,), (2, 320), (28, 320), (3, 4, 64)])
def test_rfft_and_irfft_match_numpy_bit_for_bit(path: str, shape: tuple[int, ...]) -> None:
    frames = np.random.default_rng(7).standard_normal(shape)
    spectra = fft.rfft(frames)
    assert np.array_equal(spectra, np.fft.rfft(frames))
    assert np.array_equal(fft.irfft(spectra, shape[-1]), np.fft.irfft(spectra, shape[-1]))


def test_strided_views_and_odd_sizes_are_transformed_like_numpy(path: str) -> None:
    block = np.random.default_rng(8).standard_normal((4, 640))
    view = block[::2, ::2]  # neither row nor column contiguous
    assert np.array_equal(fft.rfft(view), np.fft.rfft(view))
    odd = block[0, :321]
    assert np.array_equal(fft.rfft(odd), np.fft.rfft(odd))
    spectra = np.fft.rfft(block[:, :320])
    assert np.array_equal(fft.irfft(spectra[::2], 320), np.fft.irfft(spectra[::2], 320))
    assert np.allclose(fft.irfft(spectra, 319), np.fft.irfft(spectra, 319))
