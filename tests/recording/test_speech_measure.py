"""The real-call test's intelligibility measure follows a moving time line but forgives no loss."""

from __future__ import annotations

import numpy as np
from scipy.signal import resample_poly

from tests.recording.speech import RATE, aligned_stoi, conversation


def played_and_heard(drift_ppm: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The agent's side of a conversation, and a 48 kHz copy that starts 265 ms into it, slowed by
    ``drift_ppm`` (as the pulse backend's drift resampler may), with a little noise."""
    agent, _ = conversation(seconds=12.0, seed=5)
    heard = agent[int(0.265 * RATE) :]
    if drift_ppm:
        heard = resample_poly(heard, 1_000_000 + drift_ppm, 1_000_000)
    heard = resample_poly(heard, 3, 1)
    return agent, heard + 1e-4 * np.random.default_rng(1).standard_normal(len(heard))


def test_a_copy_on_a_drifting_time_line_scores_near_one() -> None:
    agent, heard = played_and_heard(drift_ppm=2000)  # 20 ms over the 10 s
    figure = aligned_stoi(agent, RATE, heard, 48000)
    assert figure.stoi >= 0.97, figure
    assert 240.0 <= figure.lag_ms <= 270.0, figure  # the whole file's mean shift
    assert 15.0 <= figure.moves_ms[1] - figure.moves_ms[0] <= 25.0, figure  # the track followed the drift


def test_lost_speech_and_noise_count() -> None:
    agent, heard = played_and_heard()
    whole = aligned_stoi(agent, RATE, heard, 48000).stoi
    gaps = heard.copy()
    for start in range(48000, len(gaps), 48000):  # 100 ms lost every second
        gaps[start : start + 4800] = 0.0
    noisy = heard + 0.1 * np.random.default_rng(2).standard_normal(len(heard))
    assert aligned_stoi(agent, RATE, gaps, 48000).stoi < whole - 0.03
    assert aligned_stoi(agent, RATE, noisy, 48000).stoi < 0.9


def test_a_skipped_span_is_left_out_and_only_it() -> None:
    agent, heard = played_and_heard()
    silenced = heard.copy()
    silenced[3 * 48000 : 5 * 48000] = 0.0  # a pause: silence in the recording
    assert aligned_stoi(agent, RATE, silenced, 48000, skip_s=(3.0, 5.0)).stoi >= 0.97
    assert aligned_stoi(agent, RATE, silenced, 48000).stoi < 0.9
