"""Privacy mute (exact zeros, click-free un-mute) and the chain's streaming behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import fftconvolve, resample_poly

from offhook.audio.chain import Chain, ChainConfig, process_signals
from offhook.audio.highpass import HighPass
from offhook.audio.mute import PrivacyMute
from tests.audio.conftest import erle_db
from tests.bench.audio.scenes import RATE, pink_noise


@pytest.fixture(scope="module")
def scene(far_speech, near_speech, office_rirs):
    far = far_speech[: 8 * RATE]
    echo = 0.3 * fftconvolve(far, office_rirs[0])[: len(far)]
    near = np.zeros(len(far))
    near[5 * RATE : 8 * RATE] = 0.3 * near_speech[: 3 * RATE]
    noise = pink_noise(len(far), np.random.default_rng(9))
    noise *= np.std(echo) / 10 ** (30 / 20) / np.std(noise)
    return far, echo + near + noise, echo, noise


@pytest.mark.parametrize("rate", [16000, 48000])
def test_muted_output_is_exact_zeros_and_unmute_ramps(scene, rate):
    far, mic, _, _ = scene
    if rate != RATE:
        far, mic = resample_poly(far, 3, 1), resample_poly(mic, 3, 1)
    chain = Chain(ChainConfig(rate=rate))
    n = chain.frame
    outs = []
    for k in range(len(mic) // n):
        if k == 300:
            chain.mute.set_muted(True)
        if k == 500:
            chain.mute.set_muted(False)
        outs.append(chain.process(mic[k * n : (k + 1) * n], far[k * n : (k + 1) * n]))
    out = np.concatenate(outs)
    muted = out[301 * n : 500 * n]
    assert np.all(muted == 0.0)  # bit-exact digital silence
    assert np.any(out[502 * n :] != 0.0)
    # Un-mute fades in: no jump bigger than the signal's own sample-to-sample movement allows.
    ramp = out[500 * n : 500 * n + n]
    assert abs(ramp[0]) < 0.01


def test_mute_gain_ramp_is_bounded():
    mute = PrivacyMute(RATE, fade_ms=5.0, muted=True)
    ones = np.ones(160)
    assert np.all(mute.process(ones) == 0.0)
    mute.set_muted(False)
    ramp = np.concatenate([mute.process(ones) for _ in range(2)])
    assert np.max(np.diff(ramp)) <= 1.0 / 80 + 1e-12
    assert ramp[-1] == 1.0


@pytest.mark.parametrize("rate", [16000, 48000])
@pytest.mark.parametrize("ns", [True, False])
def test_streaming_in_chunks_equals_whole_file(scene, rate, ns):
    far, mic, _, _ = scene
    far, mic = far[: 4 * RATE], mic[: 4 * RATE]
    if rate != RATE:
        far, mic = resample_poly(far, 3, 1), resample_poly(mic, 3, 1)
    config = ChainConfig(rate=rate, ns=ns)
    whole = Chain(config).push(mic, far)
    chain = Chain(config)
    rng = np.random.default_rng(0)
    pieces = []
    pos = 0
    while pos < len(mic):
        size = int(rng.integers(1, 3 * chain.frame))
        pieces.append(chain.push(mic[pos : pos + size], far[pos : pos + size]))
        pos += size
    streamed = np.concatenate(pieces)
    assert np.array_equal(whole, streamed)


def test_48k_path_cancels_echo(scene):
    far, mic, _echo, _noise = scene
    far48, mic48 = resample_poly(far, 3, 1), resample_poly(mic, 3, 1)
    out = process_signals(mic48, far48, ChainConfig(rate=48000, gate=False))
    assert len(out) == len(mic48)
    tail = slice(3 * 48000, 5 * 48000)
    assert erle_db(mic48[tail], out[tail]) > 20.0


def test_near_end_alone_passes_through(near_speech):
    near = 0.3 * near_speech[: 5 * RATE]
    noise = pink_noise(len(near), np.random.default_rng(3)) * 0.001
    mic = near + noise
    out = process_signals(mic, np.zeros(len(mic)), ChainConfig(gate=False, ns=False))
    # No far end: the canceller must leave the agent's voice alone (aligned, same level); only
    # the 80 Hz high-pass at the head of the chain touches it.
    assert np.corrcoef(out, HighPass().process(mic))[0, 1] > 0.99
