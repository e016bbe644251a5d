"""Echo canceller behaviour on a known echo path with speech (not sine waves)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy.signal import fftconvolve

from offhook.audio import aec as aec_module
from offhook.audio.aec import AecConfig, EchoCanceller
from offhook.audio.chain import Chain, ChainConfig
from offhook.audio.highpass import HighPass
from offhook.audio.suppress import SuppressorConfig
from offhook.audio.synthesis import GainFilter
from tests.audio.conftest import erle_db
from tests.bench.audio import scenes
from tests.bench.audio.scenes import RATE, pink_noise

DELAY = 1600  # 100 ms bulk delay


def _echo(far: np.ndarray, rir: np.ndarray) -> np.ndarray:
    echo = fftconvolve(far, rir)[: len(far)]
    return 0.3 * np.concatenate((np.zeros(DELAY), echo))[: len(far)]


def _noise(n: int, level: float) -> np.ndarray:
    noise = pink_noise(n, np.random.default_rng(5))
    return level * noise / np.std(noise)


def _run(aec: EchoCanceller | Chain, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
    n = aec.frame
    out = np.zeros(len(mic))
    for i in range(0, len(mic) // n * n, n):
        result = aec.process(mic[i : i + n], ref[i : i + n])
        out[i : i + n] = result if isinstance(aec, Chain) else result.out
    return out


def _linear() -> EchoCanceller:
    return EchoCanceller(AecConfig(tail_ms=128))


def _suppressed() -> Chain:
    """Canceller and residual echo suppressor, no noise suppressor or gate."""
    return Chain(ChainConfig(gate=False, ns=False, aec_config=AecConfig(tail_ms=128)))


def test_converges_on_known_echo_path_and_finds_the_delay(far_speech, office_rirs):
    far = far_speech[: 8 * RATE]
    echo = _echo(far, office_rirs[0])
    noise = _noise(len(far), np.std(echo) / 10 ** (35 / 20))
    mic = echo + noise
    aec = _linear()
    out = _run(aec, mic, far)
    last = slice(5 * RATE, 8 * RATE)
    assert erle_db(mic[last], out[last]) > 18.0
    # The bulk delay is compensated up to the filter's safety margin of two frames.
    assert abs(aec.delay_samples + 2 * aec.frame - DELAY) <= aec.frame


def _probe_erle(aec: EchoCanceller, far: np.ndarray, rir: np.ndarray) -> float:
    """ERLE of a frozen copy of the filter on echo alone: pauses and noise cannot blur it."""
    frozen = copy.deepcopy(aec)
    frozen.adapt = False
    echo = _echo(far, rir)
    out = _run(frozen, echo, far)
    active = slice(DELAY + RATE // 2, len(far))
    return erle_db(echo[active], out[active])


def test_no_divergence_in_double_talk(far_speech, near_speech, office_rirs):
    far = far_speech[: 10 * RATE]
    probe = far_speech[10 * RATE : 14 * RATE]
    echo = _echo(far, office_rirs[0])
    near = np.zeros(len(far))
    dt = slice(6 * RATE, 10 * RATE)
    # Near end as loud as the echo: the hard case for a canceller.
    near[dt] = near_speech[: 4 * RATE] * np.std(echo) / np.std(near_speech[: 4 * RATE])
    noise = _noise(len(far), np.std(echo) / 10 ** (35 / 20))
    mic = echo + near + noise
    aec = _linear()
    _run(aec, mic[: 6 * RATE], far[: 6 * RATE])
    erle_before = _probe_erle(aec, probe, office_rirs[0])
    out = _run(aec, mic[dt], far[dt])
    erle_after = _probe_erle(aec, probe, office_rirs[0])
    assert erle_before > 15.0
    assert erle_after > erle_before - 3.0
    # During double talk the echo is still removed: the output minus the near end is small.
    assert erle_db(echo[dt], out - near[dt]) > 10.0


def test_reconverges_after_echo_path_change(far_speech, office_rirs):
    far = far_speech[: 12 * RATE]
    change = 6 * RATE
    echo = np.concatenate((_echo(far, office_rirs[0])[:change], _echo(far, office_rirs[1])[change:]))
    noise = _noise(len(far), np.std(echo) / 10 ** (35 / 20))
    mic = echo + noise
    out = _run(_linear(), mic, far)
    settled = slice(change + 3 * RATE, 12 * RATE)
    just_after = slice(change, change + RATE // 2)
    assert erle_db(mic[just_after], out[just_after]) < erle_db(mic[settled], out[settled]) - 3.0
    assert erle_db(mic[settled], out[settled]) > 15.0


def test_suppressor_removes_more_echo_and_keeps_the_noise_floor(far_speech, office_rirs):
    far = far_speech[: 8 * RATE]
    echo = _echo(far, office_rirs[0])
    noise = _noise(len(far), np.std(echo) / 10 ** (30 / 20))
    mic = echo + noise
    linear = _run(_linear(), mic, far)
    full_aec = _suppressed()
    full = _run(full_aec, mic, far)
    full = np.concatenate((full[full_aec.latency :], np.zeros(full_aec.latency)))
    last = slice(5 * RATE, 8 * RATE)
    assert erle_db(mic[last], full[last]) > erle_db(mic[last], linear[last]) + 2.0
    # Comfort noise: the output never drops far below the background noise level.
    assert np.std(full[last]) > 0.5 * np.std(noise[last])


def test_a_far_end_pause_passes_the_agent_through_exactly_as_the_full_suppressor_would(
    far_speech, near_speech, office_rirs, monkeypatch
):
    """Once the echo has died away the suppressor is skipped (every gain would be one); the
    output must be what the full suppressor gives, before, during and after the pause."""
    far = np.concatenate((far_speech[: 4 * RATE], np.zeros(3 * RATE), far_speech[4 * RATE : 6 * RATE]))
    echo = _echo(far, office_rirs[0])
    near = np.zeros(len(far))
    talk = slice(int(4.8 * RATE), int(6.8 * RATE))
    near[talk] = near_speech[: 2 * RATE] * np.std(echo) / np.std(near_speech[: 2 * RATE])
    mic = echo + near + _noise(len(far), np.std(echo) / 10 ** (30 / 20))

    passed = []
    real_pass_through = GainFilter.pass_through
    monkeypatch.setattr(
        GainFilter, "pass_through", lambda self, block: passed.append(1) or real_pass_through(self, block)
    )
    short_cut = _suppressed()
    out = _run(short_cut, mic, far)
    assert len(passed) > RATE // short_cut.frame  # more than a second of the pause was passed

    monkeypatch.setattr(aec_module, "ECHO_GONE_FRAMES", 10**9)
    full = _run(_suppressed(), mic, far)
    assert np.max(np.abs(out - full)) < 1e-5 * np.max(np.abs(full))
    # In the pause the agent's voice comes out unchanged but for the high-pass, only delayed.
    lag = short_cut.latency
    pause = slice(6 * RATE, 6 * RATE + RATE // 2)
    high_passed = HighPass().process(mic)
    assert np.allclose(out[pause], high_passed[pause.start - lag : pause.stop - lag], rtol=0, atol=1e-12)


def test_linear_output_frames_stay_valid_after_later_frames(far_speech, office_rirs):
    """Frames returned earlier must not change when later ones are processed (a caller may keep
    them, as Chain.push does), including frames of a far-end pause."""
    far = np.concatenate((far_speech[: 2 * RATE], np.zeros(2 * RATE)))
    mic = _echo(far, office_rirs[0]) + _noise(len(far), 1e-3)
    aec, n = _linear(), 160
    kept = [aec.process(mic[i : i + n], far[i : i + n]).out for i in range(0, len(far), n)]
    copied = _run(_linear(), mic, far)
    assert np.array_equal(np.concatenate(kept), copied)


@pytest.mark.parametrize("poison", [np.nan, 30.0])
def test_watchdog_resets_a_diverged_canceller_instead_of_passing_garbage_on(poison, far_speech, office_rirs, caplog):
    """A filter gone non-finite is reset at once; one whose output runs away (here: coefficients
    blown up 30-fold) after RUNAWAY_FRAMES frames. Either way the output stays finite and never
    far louder than the microphone, and the canceller converges again."""
    far = far_speech[: 12 * RATE]
    mic = _echo(far, office_rirs[0]) + _noise(len(far), 1e-4)
    aec, n = _linear(), 160
    half = 4 * RATE // n * n
    before = _run(aec, mic[:half], far[:half])
    assert erle_db(mic[half - RATE : half], before[-RATE:]) > 15.0
    aec._weights *= poison
    with caplog.at_level("WARNING", logger="offhook.audio.aec"):
        after = _run(aec, mic[half:], far[half:])
    assert aec.resets == 1
    assert "reset" in caplog.text
    assert np.all(np.isfinite(after))
    # Never 20 dB louder than the microphone, frame by frame, while the watchdog waits.
    frames = (aec_module.RUNAWAY_FRAMES + 1) * n
    out_frames, mic_frames = after[:frames].reshape(-1, n), mic[half : half + frames].reshape(-1, n)
    assert np.all(np.sum(out_frames**2, axis=1) <= 100.0 * (np.sum(mic_frames**2, axis=1) + n * 1.5e-7))
    assert erle_db(mic[-2 * RATE :], after[-2 * RATE :]) > 15.0


def _reverberant_rirs() -> tuple[np.ndarray, np.ndarray]:
    """A meeting room (RT60 0.6 s): the device 2 m from the speaker, then moved to its other side."""
    room = (7.0, 5.0, 3.0)
    first = scenes.image_rir(room, (3.0, 2.5, 1.0), (4.6, 3.4, 1.2), 0.6, 0.3)
    moved = scenes.image_rir(room, (3.0, 2.5, 1.0), (1.2, 1.2, 1.3), 0.6, 0.3)
    return first, moved


def _reverberant_chain(floor_bias: float | None = None) -> Chain:
    suppressor = SuppressorConfig() if floor_bias is None else SuppressorConfig(floor_bias=floor_bias)
    return Chain(ChainConfig(gate=False, ns=False, aec_config=AecConfig(tail_ms=256), suppressor_config=suppressor))


def _aligned(chain: Chain, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
    out = _run(chain, mic, far)
    return np.concatenate((out[chain.latency :], np.zeros(chain.latency)))


def test_suppressor_takes_the_leftover_after_a_path_change_in_a_reverberant_room(far_speech):
    # The linear filter re-converges over seconds here and the leak misses the leftover: without
    # the leak floor (floor_bias=0) the chain gave 11.5 dB ERLE 2-5 s after the move, with it 16.0.
    far = far_speech[: 10 * RATE]
    first, moved = _reverberant_rirs()
    change = 5 * RATE
    echo = np.concatenate((_echo(far, first)[:change], _echo(far, moved)[change:]))
    mic = echo + _noise(len(far), np.std(echo) / 10 ** (35 / 20))
    out = _aligned(_reverberant_chain(), mic, far)
    after = slice(change + 2 * RATE, change + 5 * RATE)
    assert erle_db(mic[after], out[after]) > 13.0


def test_leak_floor_leaves_the_agent_whole_in_double_talk(far_speech, near_speech):
    far = far_speech[: 10 * RATE]
    echo = _echo(far, _reverberant_rirs()[0])
    dt = slice(5 * RATE, 10 * RATE)
    near = np.zeros(len(far))
    near[dt] = near_speech[: 5 * RATE] * np.std(echo) / np.std(near_speech[: 5 * RATE])
    mic = echo + near + _noise(len(far), np.std(echo) / 10 ** (35 / 20))
    chain = _reverberant_chain()
    kept = erle_db(near[dt], _aligned(chain, mic, far)[dt])
    without = erle_db(near[dt], _aligned(_reverberant_chain(floor_bias=0.0), mic, far)[dt])
    # The agent's pauses keep the floor down: the near end loses no more than without it.
    assert abs(kept - without) < 0.5
