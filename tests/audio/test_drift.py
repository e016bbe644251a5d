"""Drift compensation: two clocks 300 ppm apart for ten simulated minutes, no xrun, level held."""

from __future__ import annotations

import numpy as np

from offhook.audio.drift import DriftBuffer


def test_fill_level_held_across_clock_drift():
    frame = 480
    buffer = DriftBuffer(target=2 * frame, capacity=6 * frame)
    rng = np.random.default_rng(0)
    produced = 0.0
    consumed = 0
    fills = []
    ratios = []
    tone = np.sin(2 * np.pi * 440 * np.arange(48000 * 2) / 48000)
    for tick in range(60_000):  # 10 minutes of 10 ms consumer ticks
        # Producer clock runs 300 ppm fast, with callback jitter of +/- one frame.
        produced += frame * 1.0003
        while consumed + frame <= produced + frame * rng.integers(-1, 2) * 0.5:
            start = consumed % len(tone)
            buffer.push(np.resize(tone[start : start + frame], frame))
            consumed += frame
        buffer.pull(frame)
        if tick > 3000:
            fills.append(buffer.fill)  # after the pull: the target minus the frame just taken
            ratios.append(buffer.ratio)
    assert buffer.underruns <= 1  # at most the very first pull before any data
    assert buffer.overruns == 0
    assert abs(np.mean(fills) - frame) < frame / 2
    assert abs(np.mean(ratios) - 1.0003) < 5e-5  # the controller found the drift


def test_resampled_signal_stays_clean():
    frame = 480
    buffer = DriftBuffer(target=2 * frame, capacity=8 * frame)
    t = np.arange(48000 * 4) / 48000
    tone = 0.5 * np.sin(2 * np.pi * 1000 * t)
    for k in range(3):
        buffer.push(tone[k * frame : (k + 1) * frame])
    out = []
    for k in range(3, len(tone) // frame):
        buffer.push(tone[k * frame : (k + 1) * frame])
        out.append(buffer.pull(frame))
    y = np.concatenate(out)[48000:]
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak = int(np.argmax(spectrum))
    noise = np.delete(spectrum, range(max(0, peak - 20), peak + 20))
    assert 20 * np.log10(spectrum[peak] / noise.max()) > 40.0  # no clicks or dropouts
