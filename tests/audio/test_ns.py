"""Noise suppressor: removes steady noise under the agent's words, never touches digital zeros."""

from __future__ import annotations

import numpy as np
import pytest

from offhook.audio.chain import Chain, ChainConfig, process_signals
from offhook.audio.highpass import HighPass
from offhook.audio.ns import NoiseSuppressor, NsConfig
from tests.audio.conftest import erle_db
from tests.bench.audio.scenes import RATE, pink_noise


@pytest.fixture(scope="module")
def noisy(near_speech):
    """Two seconds of office noise, then the agent over it (noise 20 dB below the words)."""
    near = np.concatenate((np.zeros(2 * RATE), 0.1 * near_speech[: 5 * RATE]))
    noise = pink_noise(len(near), np.random.default_rng(2))
    noise *= np.std(near[2 * RATE :]) / 10 ** (20 / 20) / np.std(noise)
    return near, noise


def test_steady_noise_is_removed_under_and_between_words(noisy):
    near, noise = noisy
    mic = near + noise
    out = process_signals(mic, np.zeros(len(mic)), ChainConfig(gate=False, ns=True))
    off = process_signals(mic, np.zeros(len(mic)), ChainConfig(gate=False, ns=False))
    high_passed = HighPass().process(mic)
    assert np.array_equal(off, high_passed)  # nothing else touches a far-end-free signal
    pause = slice(RATE, 2 * RATE)
    assert erle_db(mic[pause], out[pause]) > 6.0
    # The words are kept: the output follows the clean speech within 0.003 of how closely the
    # microphone did (correlation: a gain just under one on the words themselves is no harm;
    # 0.0023 here, 0.0010 without the speech presence weighting), both after the high-pass.
    words = slice(2 * RATE, len(mic))
    clean = HighPass().process(near)[words]
    assert np.corrcoef(out[words], clean)[0, 1] > np.corrcoef(high_passed[words], clean)[0, 1] - 0.003


def test_digital_zeros_stay_exact_zeros_and_teach_the_noise_estimate_nothing(noisy, far_speech):
    """A muted source (pactl set-source-mute) delivers exact zeros: they come out as exact zeros,
    with the far end talking, and the noise estimate is the same afterwards."""
    near, noise = noisy
    mic = near + noise
    muted = slice(RATE, 3 * RATE)
    mic[muted] = 0.0
    far = 0.3 * far_speech[: len(mic)]
    chain = Chain(ChainConfig(ns=True))
    n = chain.frame
    outs, noise_at = [], {}
    for k in range(len(mic) // n):
        outs.append(chain.process(mic[k * n : (k + 1) * n], far[k * n : (k + 1) * n]))
        if k * n in (muted.start, muted.stop - n):
            assert chain.ns is not None
            noise_at[k * n] = chain.ns.noise.copy()
    out = np.concatenate(outs)
    inside = slice(muted.start + n, muted.stop)  # one frame for the filter's tail
    assert np.all(out[inside] == 0.0)
    assert np.array_equal(noise_at[muted.start], noise_at[muted.stop - n])


def test_steady_noise_does_not_open_lone_bins():
    """Musical noise: bins that the noise happens to push up for a frame must not open to short
    tones. A bin's gain is bounded by three times its Bark band's (SpeexDSP's bound); the speech
    presence weighting, which also holds such bins down, is off to see the bound alone."""

    def opened(band_limit: float) -> float:
        rng = np.random.default_rng(5)
        ns = NoiseSuppressor(161, NsConfig(band_limit=band_limit, presence_gain=False))
        gains = [ns.process(rng.exponential(1.0, 161)) for _ in range(600)][200:]  # settled
        return float(np.mean(np.array(gains) > 3 * ns.floor))  # share of bin-frames opened

    assert opened(NsConfig().band_limit) < 0.02
    assert opened(0.0) > 0.05  # without the bound (7.6 % here)


def test_speech_presence_keeps_noise_only_bins_at_the_floor(noisy):
    """With the gain weighed by the probability of speech presence, the gain in steady noise
    stays near the floor instead of flickering about it (musical noise). The words are checked with
    it on, as shipped, in test_steady_noise_is_removed_under_and_between_words."""
    near, noise = noisy
    mic = near + noise
    plain, weighed = NoiseSuppressor(161, NsConfig(presence_gain=False)), NoiseSuppressor(161)
    window = np.sqrt(np.hanning(2 * 160 + 1)[:-1])
    flicker: dict[str, list[float]] = {"plain": [], "weighed": []}
    for k in range(len(mic) // 160 - 1):
        power = np.abs(np.fft.rfft(window * mic[k * 160 : k * 160 + 320])) ** 2
        for name, ns in (("plain", plain), ("weighed", weighed)):
            gain = ns.process(power)
            if RATE // 160 <= k < 2 * RATE // 160 - 1:  # noise only, after a second of learning
                flicker[name].append(float(np.std(20 * np.log10(gain))))
    assert np.mean(flicker["weighed"]) < 0.5 * np.mean(flicker["plain"])
