"""Noise gate: smooth gain, no clipped onsets, noise attenuated, speech untouched."""

from __future__ import annotations

import numpy as np

from offhook.audio.gate import GateConfig, NoiseGate
from tests.bench.audio.scenes import RATE, pink_noise


def _run(gate: NoiseGate, x: np.ndarray, echo_power: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros(len(x))
    gains = np.zeros(len(x))
    for i in range(0, len(x) // 160 * 160, 160):
        out[i : i + 160] = gate.process(x[i : i + 160], echo_power)
        assert gate.gains is not None
        gains[i : i + 160] = gate.gains
    return out, gains


def _speech_in_noise(near_speech: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    speech = np.concatenate((np.zeros(2 * RATE), near_speech[: 6 * RATE]))
    noise = pink_noise(len(speech), np.random.default_rng(2))
    active = np.abs(speech) > 0.01
    noise *= np.sqrt(np.mean(speech[active] ** 2)) / 10 ** (snr_db / 20) / np.std(noise)
    return speech + noise, speech, noise


def test_gain_never_steps(near_speech):
    x, _, _ = _speech_in_noise(near_speech, 25)
    gate = NoiseGate()
    _, gains = _run(gate, x)
    assert gains.min() < 0.2 and gains.max() > 0.99  # it did open and close
    assert np.max(np.abs(np.diff(gains))) <= 0.02  # about -34 dB per sample: no clicks, no zipper


def test_noise_attenuated_speech_kept(near_speech):
    x, speech, _noise = _speech_in_noise(near_speech, 25)
    gate = NoiseGate()
    out, gains = _run(gate, x)
    lead = slice(RATE, 2 * RATE)  # noise only, after the floor has settled
    assert 10 * np.log10(np.sum(x[lead] ** 2) / np.sum(out[lead] ** 2)) > 15.0
    loud = np.abs(speech) > 0.1
    assert np.mean(gains[loud] > 0.95) > 0.99


def test_onsets_not_clipped(near_speech):
    x, speech, _ = _speech_in_noise(near_speech, 25)
    gate = NoiseGate()
    _, gains = _run(gate, x)
    envelope = np.convolve(np.abs(speech), np.ones(40) / 40, mode="same")
    active = envelope > 0.02
    onsets = np.flatnonzero(active[1:] & ~active[:-1]) + 1
    assert len(onsets) >= 3
    worst_ms = 0.0
    for onset in onsets:
        opened = np.flatnonzero(gains[onset : onset + RATE // 5] > 0.7)
        delay = (opened[0] if len(opened) else RATE // 5) * 1000 / RATE
        worst_ms = max(worst_ms, delay)
    assert worst_ms <= 5.0


def test_floor_follows_a_louder_room(near_speech):
    quiet = pink_noise(3 * RATE, np.random.default_rng(1)) * 0.001
    loud = pink_noise(8 * RATE, np.random.default_rng(2)) * 0.004  # +12 dB
    gate = NoiseGate(GateConfig(floor_rise_db_per_s=6.0))
    _, gains = _run(gate, np.concatenate((quiet, loud)))
    assert np.mean(gains[-RATE:] < 0.2) > 0.95


def test_the_suppressor_opens_the_gate_for_the_agent_over_the_customers_echo(far_speech, near_speech, office_rirs):
    """Double talk with the echo 6 dB above the agent: the residual echo the suppressor reports
    raises the gate's threshold, so the suppressor tells the gate when it hears the agent over
    the echo; in far-end single talk it hardly ever does."""
    from scipy.signal import fftconvolve

    from offhook.audio.chain import Chain, ChainConfig
    from tests.bench.audio.scenes import RATE, pink_noise

    far = far_speech[: 10 * RATE]
    echo = 0.3 * np.concatenate((np.zeros(1600), fftconvolve(far, office_rirs[0])[: len(far) - 1600]))
    near = np.zeros(len(far))
    talk = slice(6 * RATE, 10 * RATE)
    near[talk] = near_speech[: 4 * RATE] * np.std(echo) / 10 ** (6 / 20) / np.std(near_speech[: 4 * RATE])
    noise = pink_noise(len(far), np.random.default_rng(4))
    mic = echo + near + noise * np.std(echo) / 10 ** (30 / 20) / np.std(noise)
    chain = Chain(ChainConfig(ns=True))
    n = chain.frame
    heard = []
    for k in range(len(mic) // n):
        chain.process(mic[k * n : (k + 1) * n], far[k * n : (k + 1) * n])
        heard.append(chain._talking)
    heard_arr = np.array(heard)
    words = np.array([np.std(near[k * n : (k + 1) * n]) > 0.3 * np.std(near[talk]) for k in range(len(heard))])
    single = slice(3 * RATE // n, 6 * RATE // n)
    assert heard_arr[words].mean() > 0.5
    assert heard_arr[single].mean() < 0.05


def test_after_noise_suppression_the_gate_closes_shallow_on_noise_and_deep_on_echo():
    """Behind the noise suppressor the gate only deepens the pauses (a full step would make the
    background pump), but residual echo standing above the noise floor still gets the full depth."""
    noise = pink_noise(6 * RATE, np.random.default_rng(4)) * 0.001
    config = GateConfig()
    shallow = 10 ** (config.noise_floor_gain_with_ns_db / 20)
    deep = 10 ** (config.floor_gain_db / 20)
    gate = NoiseGate(config, after_ns=True)
    _, gains = _run(gate, noise[: 3 * RATE])
    assert abs(gains[-RATE // 2 :].mean() - shallow) < 1e-9
    echo_power = 4.0 * float(np.mean(noise**2))  # residual echo 6 dB over the background
    _, gains = _run(gate, noise[3 * RATE :], echo_power)
    assert abs(gains[-RATE // 2 :].mean() - deep) < 1e-9
    assert np.max(np.abs(np.diff(gains))) <= 0.02  # the change of depth is slewed like any other
    # Without the noise suppressor ahead, noise alone gets the full depth too.
    _, gains = _run(NoiseGate(config), noise[: 3 * RATE])
    assert abs(gains[-RATE // 2 :].mean() - deep) < 1e-9
