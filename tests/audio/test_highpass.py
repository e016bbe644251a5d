"""High-pass at the head of the chain: rumble out, the voice band untouched, zeros kept zeros."""

from __future__ import annotations

import numpy as np

from offhook.audio.highpass import HighPass
from tests.bench.audio.scenes import RATE


def _tone(hz: float, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)


def _gain_db(hz: float) -> float:
    tone = _tone(hz)
    out = HighPass().process(tone)
    settled = slice(RATE // 2, RATE)
    return float(10 * np.log10(np.sum(out[settled] ** 2) / np.sum(tone[settled] ** 2)))


def test_rumble_is_taken_out_and_the_voice_band_kept():
    assert _gain_db(30.0) < -15.0  # HVAC rumble
    assert _gain_db(10.0) < -30.0
    for hz in (300.0, 1000.0, 3000.0):
        assert abs(_gain_db(hz)) < 0.1


def test_streaming_in_frames_equals_one_call():
    signal = np.random.default_rng(1).standard_normal(RATE)
    whole = HighPass().process(signal)
    streaming = HighPass()
    framed = np.concatenate([streaming.process(signal[i : i + 160]) for i in range(0, RATE, 160)])
    assert np.allclose(framed, whole, rtol=0, atol=1e-12)


def test_digital_zeros_stay_exact_zeros_with_no_tail():
    """A muted source: no ringing of the last sound leaks into its zeros, nor out of them."""
    hp = HighPass()
    loud = 0.5 * _tone(50.0, 0.1)
    hp.process(loud)
    zeros = np.zeros(160)
    out = hp.process(zeros)
    assert not out.any()
    # After the zeros the filter starts afresh, as if the sound before had never been.
    after = _tone(440.0, 0.01)
    assert np.array_equal(hp.process(after), HighPass().process(after))
