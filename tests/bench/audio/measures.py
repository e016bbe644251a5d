"""Objective measures for echo cancellers and gates, computed identically for every system."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float64]
RATE = 16000


def db_ratio(a: Float, b: Float) -> float:
    return float(10 * np.log10((np.sum(a**2) + 1e-20) / (np.sum(b**2) + 1e-20)))


def align(out: Float, mic: Float, max_lag: int = 800) -> Float:
    """Undo a system's constant latency (0..50 ms) found by cross-correlation with the mic."""
    seg = slice(len(mic) // 4, len(mic) - max_lag)
    corr = [float(np.dot(mic[seg], out[seg.start + lag : seg.stop + lag])) for lag in range(max_lag)]
    lag = int(np.argmax(corr))
    return np.concatenate((out[lag:], np.zeros(lag)))


def time_to_erle(
    mic: Float, out: Float, echo: Float, noise: Float, start: int, end: int, target: float = 10.0
) -> float:
    """Seconds from the first far-end echo after ``start`` until ERLE reaches ``target`` and holds.

    ERLE is taken on 200 ms windows (50 ms hop) where the echo is at least 10 dB above the noise;
    "holds" means the median of the echo-active windows in the next second is also above target.
    """
    win, hop = RATE // 5, RATE // 20
    times, values = [], []
    for k in range(start, end - win, hop):
        sl = slice(k, k + win)
        if np.sum(echo[sl] ** 2) > 10 * np.sum(noise[sl] ** 2):
            times.append(k)
            values.append(db_ratio(mic[sl], out[sl]))
    if not times:
        return float("nan")
    first = times[0]
    t = np.array(times)
    v = np.array(values)
    for i, (k, value) in enumerate(zip(t, v, strict=True)):
        if value >= target:
            ahead = v[i : i + np.count_nonzero(t[i:] < k + RATE)]
            if np.median(ahead) >= target:
                return (k + win - first) / RATE
    return float("inf")


def onset_clipping_ms(mic: Float, out: Float, near: Float, start: int, end: int) -> float:
    """Mean time (ms) from each near-end speech onset until the output reaches -3 dB of the mic."""
    block = RATE // 400  # 2.5 ms
    env = np.convolve(np.abs(near[start:end]), np.ones(80) / 80, mode="same")
    active = env > 0.2 * env.max()
    onsets = np.flatnonzero(active[1:] & ~active[:-1]) + 1
    delays = []
    for onset in onsets:
        o = start + onset
        for b in range(0, RATE // 5, block):
            sl = slice(o + b, o + b + block)
            if np.sum(out[sl] ** 2) >= 0.5 * np.sum(mic[sl] ** 2):
                delays.append(b * 1000 / RATE)
                break
        else:
            delays.append(200.0)
    return float(np.mean(delays)) if delays else float("nan")


def pesq_wb(reference: Float, degraded: Float) -> float:
    from pesq import pesq  # type: ignore[import-not-found]

    return float(pesq(RATE, reference, degraded, "wb"))


def stoi(reference: Float, degraded: Float) -> float:
    from pystoi import stoi as _stoi  # type: ignore[import-not-found]

    return float(_stoi(reference, degraded, RATE, extended=False))


def kurtosis_ratio(noise_in: Float, noise_out: Float, size: int = 512) -> float:
    """Musical noise: the kurtosis of the residual noise's power spectra over that of the input
    noise (Uemura et al.), per bin over time, averaged over 100-7000 Hz. Isolated spectral peaks
    that come and go (musical tones) raise it; 1 is a plain level change."""

    def kurtosis(x: Float) -> Float:
        hop = size // 2
        frames = np.lib.stride_tricks.sliding_window_view(x, size)[::hop] * np.hanning(size)
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        band = slice(int(100 * size / RATE), int(7000 * size / RATE))
        p = power[:, band]
        return np.mean(p**2, axis=0) / (np.mean(p, axis=0) ** 2 + 1e-30)

    return float(np.mean(kurtosis(noise_out)) / np.mean(kurtosis(noise_in)))
