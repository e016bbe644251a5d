"""Voice activity for conversation analytics: who is talking, per 10 ms frame.

Why this shape:

- It runs where offhook already has clean signals: the agent's side is the echo canceller's
  output (after residual echo suppression, before the gate and noise suppression), the customer's
  side the echo reference (what the softphone plays). Neither carries the other voice except the
  echo the canceller left. That follows the reference, so :class:`PairVad` raises the agent's
  floor by the reference's recent level times the measured coupling between the two (and by the
  suppressor's residual echo estimate where the chain hands it on, as the gate does): the
  customer's voice does not count as the agent's.
- Level, not a speech model: both signals are close-talk speech 15-35 dB over their background,
  so a band level (200-4000 Hz, where speech is and pink office noise is not) over a tracked floor
  separates them, down to a fixed range under the loudest frame (the truth's own definition); the
  bench (tests/bench/bench_analytics.py) measures it against webrtcvad and Silero VAD on the same
  calls.
- The floor is the minimum of the 50 ms level over the last few seconds (minimum statistics): it
  follows a noisier room within that window and never learns speech unless someone talks for the
  whole window without a single pause.
- Decisions are made per block of frames with numpy (the frames are buffered; analytics need no
  answer within 10 ms), so the cost per frame is a copy plus a share of a few vector calls.
- The raw per-frame decisions are smoothed afterwards (:func:`smooth`): short gaps inside a turn
  are bridged, blips dropped, and each turn padded by the level the floor hides (word tails).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from offhook.audio import FRAME_MS, PROCESS_RATE, fft

Float = NDArray[np.float64]
Bool = NDArray[np.bool_]


@dataclass(frozen=True)
class VadConfig:
    """Detector settings; the defaults are tuned on the bench's tuning half (docs/analytics.md)."""

    rate: int = PROCESS_RATE
    low_hz: float = 200.0
    high_hz: float = 4000.0
    open_db: float = 8.0  # the agent's band level above the floor (plus echo) that counts as speech
    customer_open_db: float = 4.0  # the same on the echo reference
    absolute_db: float = -70.0  # quieter than this (dBFS, band) is nobody talking, whatever the floor
    # Speech counts down to this far under the loudest frame so far (where the floor is lower): the
    # truth's definition, and it keeps a clean reference's faint breaths and a headset's faint echo out.
    peak_range_db: float = 33.0
    customer_peak_range_db: float = 35.0
    smooth_frames: int = 5  # the floor is tracked on a 50 ms moving average of the level
    floor_s: float = 3.0  # minimum-statistics window
    floor_bias_db: float = 1.5  # the windowed minimum sits below the noise's mean level
    echo_margin: float = 2.0  # residual echo counts this many times over (it is an estimate)
    # Echo guard from the reference (see PairVad).
    echo_reach_frames: int = 40  # bulk delay (up to 320 ms) plus the first of the tail
    coupling_s: float = 3.0  # of the customer talking
    coupling_min_frames: int = 100
    coupling_margin: float = 3.0
    coupling_quantile: float = 0.5  # of the ratios: low enough that the agent talking over the customer does not count
    startup_coupling: float = 0.1  # until measured: the echo 10 dB under the reference (speakerphone)
    block: int = 50  # frames decided together

    @property
    def frame(self) -> int:
        return self.rate * FRAME_MS // 1000


@dataclass(frozen=True)
class Smoothing:
    """Post-processing of raw frame decisions into turns (frames of 10 ms)."""

    bridge_frames: int = 30  # gaps shorter than this inside a turn are speech (300 ms)
    min_frames: int = 5  # shorter bursts are not speech (clicks)
    pre_frames: int = 2  # turns start this much earlier (the onset below the threshold)
    post_frames: int = 8  # and end this much later (the word's decaying tail under the noise)


class LevelVad:
    """Streaming band-level detector. :meth:`process` takes a block of frames (rows) and returns,
    per frame, the band level in dB above the floor (plus echo); speech is ``> open_db``."""

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config = config or VadConfig()
        n = config.frame
        freqs = np.fft.rfftfreq(n, 1.0 / config.rate)
        band = (freqs >= config.low_hz) & (freqs <= config.high_hz)
        # One-sided spectrum to mean power per sample in the band (Parseval): 2 |X|^2 / n^2.
        self._weights = np.where(band, 2.0 / n**2, 0.0)
        self._window = max(1, int(config.floor_s * 1000 / FRAME_MS))
        self._history = np.full(self._window - 1, np.inf)  # last smoothed levels (power)
        self._smooth_tail: Float | None = None
        self.floor_db: float | None = None
        self.power: Float = np.zeros(0)  # the last block's band power per frame
        self._peak = -np.inf  # loudest band level so far (dB)

    def band_power(self, frames: Float) -> Float:
        """Mean power per sample in the speech band, per frame (row)."""
        spectra = fft.rfft(frames)
        return (spectra.real**2 + spectra.imag**2) @ self._weights

    def process(
        self, frames: Float, echo: Float | None = None, power: Float | None = None, echo_margin: float | None = None
    ) -> Float:
        """Level above floor in dB per frame. ``echo``: echo power per frame still in the signal
        (counted ``echo_margin`` times, default the config's); ``power``: the frames' band power if
        already computed."""
        cfg = self.config
        if power is None:
            power = self.band_power(np.asarray(frames, dtype=np.float64).reshape(-1, cfg.frame))
        self.power = power
        k = len(power)
        # 50 ms moving average of the power for the floor (the minimum of raw 10 ms frames is
        # biased low by their spread).
        if self._smooth_tail is None:  # the first frames average with themselves, not with zeros
            self._smooth_tail = np.full(cfg.smooth_frames - 1, power[0] if k else 0.0)
        padded = np.concatenate((self._smooth_tail, power))
        cums = np.cumsum(np.concatenate(([0.0], padded)))
        span = cfg.smooth_frames
        smooth = (cums[span:] - cums[:-span]) / span
        if span > 1:
            self._smooth_tail = padded[-(span - 1) :]
        hist = np.concatenate((self._history, smooth))
        floor = np.lib.stride_tricks.sliding_window_view(hist, self._window).min(axis=1)
        self._history = hist[k:]
        floor_pow = floor * 10 ** (cfg.floor_bias_db / 10) + 1e-12
        if echo is not None:
            margin = cfg.echo_margin if echo_margin is None else echo_margin
            floor_pow = floor_pow + margin * np.asarray(echo, dtype=np.float64)
        self.floor_db = float(10 * np.log10(floor_pow[-1])) if k else self.floor_db
        level = 10 * np.log10(power + 1e-13)
        above = level - 10 * np.log10(floor_pow)
        if k:
            peak = np.maximum.accumulate(np.maximum(level, self._peak))
            self._peak = float(peak[-1])
            above = np.where(level >= peak - cfg.peak_range_db, above, np.minimum(above, -99.0))
        # Below the absolute limit: report it as well under the threshold.
        return np.where(level < cfg.absolute_db, np.minimum(above, -99.0), above)


class PairVad:
    """Both sides of a call: the customer's on the echo reference, the agent's on the canceller's
    output with an echo guard.

    Whatever echo the canceller leaves (all of it in its first second, before it has converged; a
    few dB over a quiet room's noise for a headset; the non-linear part for a desk speakerphone)
    follows the customer's level. The guard is that level (the maximum over the echo path's reach)
    times the coupling between the two sides: the median ratio of the agent's level to it over the
    last ``coupling_s`` of the customer talking, which is the echo's (and the room's) share while
    the agent talks over the customer a small part of the time. ``coupling_margin`` covers the
    echo's swing around its median; until a second of the customer's talk has been seen, the
    coupling is taken as ``startup_coupling``. A residual echo estimate, when offered, adds to it."""

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config = config or VadConfig()
        self.agent = LevelVad(config)
        self.customer = LevelVad(
            replace(config, open_db=config.customer_open_db, peak_range_db=config.customer_peak_range_db)
        )
        reach = config.echo_reach_frames
        self._far_hist = np.zeros(reach - 1)  # customer band power, recent frames
        self._talk_hist = np.zeros(reach - 1, dtype=bool)  # customer raw decisions, recent frames
        self._ratios = np.zeros(max(1, round(config.coupling_s * 1000 / FRAME_MS)))  # a ring
        self._seen = 0  # ratios measured so far
        self.coupling = config.startup_coupling
        self._frames = 0

    def process(self, agent: Float, ref: Float, residual_echo: Float | None = None) -> tuple[Float, Float]:
        """Frames (rows) of the agent's signal and the echo reference -> per-frame scores (level
        over floor and echo, dB), the agent's and the customer's. The coupling moves once per
        ``block`` frames (counted from the start), however the frames are handed in."""
        agent = np.asarray(agent, dtype=np.float64).reshape(-1, self.config.frame)
        ref = np.asarray(ref, dtype=np.float64).reshape(-1, self.config.frame)
        outs = []
        pos = 0
        while pos < len(agent):
            size = min(len(agent) - pos, self.config.block - self._frames % self.config.block)
            sl = slice(pos, pos + size)
            outs.append(self._block(agent[sl], ref[sl], None if residual_echo is None else residual_echo[sl]))
            self._frames += size
            pos += size
        if not outs:
            return np.zeros(0), np.zeros(0)
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def _block(self, agent: Float, ref: Float, residual_echo: Float | None) -> tuple[Float, Float]:
        cfg = self.config
        customer = self.customer.process(ref)
        k = len(customer)
        reach = cfg.echo_reach_frames
        far = np.concatenate((self._far_hist, self.customer.power))
        talk = np.concatenate((self._talk_hist, customer > cfg.customer_open_db))
        self._far_hist, self._talk_hist = far[k:], talk[k:]
        envelope = np.lib.stride_tricks.sliding_window_view(far, reach).max(axis=1)
        talking = np.lib.stride_tricks.sliding_window_view(talk, reach).any(axis=1)
        own = self.agent.band_power(agent)
        # Measured only where the customer talked a whole reach ago as well: by then that echo has
        # arrived, whatever the bulk delay.
        settled = talking & talk[:k]
        ratios = own[settled] / (envelope[settled] + 1e-20)
        ring = self._ratios
        index = (self._seen + np.arange(len(ratios))) % len(ring)
        ring[index[-len(ring) :]] = ratios[-len(ring) :]
        self._seen += len(ratios)
        if self._seen >= cfg.coupling_min_frames:
            self.coupling = float(np.quantile(ring[: min(self._seen, len(ring))], cfg.coupling_quantile))
        guard = np.where(talking, cfg.coupling_margin * self.coupling * envelope, 0.0)
        if residual_echo is not None:
            guard += cfg.echo_margin * np.asarray(residual_echo, dtype=np.float64)
        return self.agent.process(agent, guard, power=own, echo_margin=1.0), customer


def runs(mask: Bool) -> NDArray[np.intp]:
    """Start and end (exclusive) frame of each run of True, as rows."""
    edges = np.diff(np.concatenate(([0], np.asarray(mask, dtype=np.int8), [0])))
    return np.stack((np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)), axis=1)


def _fill(size: int, starts: NDArray[np.intp], ends: NDArray[np.intp]) -> Bool:
    """A mask with [start, end) set for each pair (ranges may overlap)."""
    delta = np.zeros(size + 1, dtype=np.int64)
    np.add.at(delta, np.clip(starts, 0, size), 1)
    np.add.at(delta, np.clip(ends, 0, size), -1)
    return np.cumsum(delta[:-1]) > 0


def bridge(mask: Bool, frames: int) -> Bool:
    """Fill gaps shorter than ``frames`` between runs of True (not before the first or after the last)."""
    out = np.array(mask, dtype=bool)
    segs = runs(out)
    if len(segs) > 1:
        ends, starts = segs[:-1, 1], segs[1:, 0]
        short = starts - ends < frames
        out |= _fill(len(out), ends[short], starts[short])
    return out


def smooth(raw: Bool, smoothing: Smoothing | None = None) -> Bool:
    """Raw frame decisions to turns: bridge short gaps, drop short bursts, pad each turn."""
    s = smoothing or Smoothing()
    segs = runs(bridge(raw, s.bridge_frames))
    keep = segs[segs[:, 1] - segs[:, 0] >= s.min_frames]
    return _fill(len(raw), keep[:, 0] - s.pre_frames, keep[:, 1] + s.post_frames)
