"""The 48 <-> 16 kHz resamplers: clean speech, little delay (they sit twice in the agent's
microphone path), no aliasing, and streaming equal to one call."""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, correlate, resample_poly, sosfiltfilt, welch

from offhook.audio.resample import Downsampler, Upsampler

RATE_48K = 48000


def _round_trip(signal: np.ndarray, chunk: int = 480) -> np.ndarray:
    down, up = Downsampler(), Upsampler()
    return np.concatenate([up.process(down.process(signal[i : i + chunk])) for i in range(0, len(signal), chunk)])


def test_speech_round_trip_keeps_its_spectrum_and_is_delayed_by_under_half_a_millisecond(far_speech):
    speech = resample_poly(far_speech[: 4 * 16000], 3, 1)  # band-limited to 8 kHz, like a headset
    out = _round_trip(speech)
    corr = correlate(out, speech, mode="full", method="fft")[len(speech) - 1 :]
    assert int(np.argmax(corr[:480])) <= 24  # 0.5 ms for both passes (linear phase, same stop band: 2 ms)
    # Minimum phase moves the phase, not the spectrum: within 0.5 dB from 100 Hz to 6 kHz.
    freqs, before = welch(speech, RATE_48K, nperseg=2048)
    _, after = welch(out[: len(speech)], RATE_48K, nperseg=2048)
    band = (freqs >= 100) & (freqs <= 6000)
    assert np.max(np.abs(10 * np.log10(after[band] / before[band]))) < 0.5


def test_content_above_the_16k_band_does_not_fold_into_it():
    rng = np.random.default_rng(3)
    high = sosfiltfilt(butter(8, [9000, 20000], "bandpass", fs=RATE_48K, output="sos"), rng.standard_normal(RATE_48K))
    down = Downsampler()
    folded = np.concatenate([down.process(high[i : i + 480]) for i in range(0, len(high), 480)])
    assert 10 * np.log10(np.mean(folded[1000:] ** 2) / np.mean(high**2)) < -60.0


def test_streaming_in_odd_chunks_equals_one_call(far_speech):
    speech = resample_poly(far_speech[:16000], 3, 1)
    whole = Upsampler().process(Downsampler().process(speech))
    assert np.array_equal(_round_trip(speech, chunk=487)[: len(whole)], whole)
