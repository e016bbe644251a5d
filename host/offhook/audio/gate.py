"""Noise gate: attenuates the office between the agent's words, never the words themselves.

Why it looks like this:

- The *noise floor* is tracked from short-block levels (falls fast, rises slowly, and not at all
  while the gate is open), so thresholds follow the room instead of a fixed dBFS value.
- *Hysteresis*: the gate opens at ``open_db`` above the floor and only closes below ``close_db``,
  after a *hold* time, so it does not chatter at the end of words.
- Detection runs on 2.5 ms blocks inside the 10 ms frame that is being processed anyway, and the
  gain may start rising at the beginning of the frame in which speech is detected: the frame
  buffer serves as look-ahead at no extra latency, so onsets are not clipped.
- The gain moves per sample along a raised-cosine-shaped one-pole path with bounded slope (attack
  a few ms, release tens of ms): no steps, no zipper noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from offhook.audio import PROCESS_RATE

Float = NDArray[np.float64]


@dataclass(frozen=True)
class GateConfig:
    rate: int = PROCESS_RATE
    # Above the tracked floor, which sits near the background's 10 ms minima: distant babble in an
    # office peaks 12-13.5 dB above it (bench, headset room), the agent's close-mic speech 25+ dB.
    open_db: float = 14.0
    close_db: float = 6.0
    floor_gain_db: float = -20.0  # gain while closed (a fully dead line sounds broken)
    # Closed on background noise alone when the noise suppressor runs ahead: it already takes the
    # office down under and between words, so the gate only deepens the pauses, and a full 20 dB
    # step at every word would make the background pump (tuning set: kurtosis ratio 2.15 at
    # -20 dB, 1.57 at -8 dB, with 18.7 dB of noise removed against SpeexDSP+preprocess's 14.2).
    # Residual echo above the noise still gets the full depth.
    noise_floor_gain_with_ns_db: float = -8.0
    attack_ms: float = 3.0
    hold_ms: float = 200.0
    release_ms: float = 120.0
    block_ms: float = 2.5
    floor_rise_db_per_s: float = 3.0


class NoiseGate:
    """Streaming noise gate; :meth:`process` takes and returns one frame (any length multiple of a block)."""

    def __init__(self, config: GateConfig | None = None, after_ns: bool = False) -> None:
        self.config = config = config or GateConfig()
        self.block = max(1, int(config.rate * config.block_ms / 1000))
        self.floor_gain = 10 ** (config.floor_gain_db / 20)
        # Closed gain when no residual echo stands above the noise floor (see GateConfig).
        self.noise_floor_gain = 10 ** (config.noise_floor_gain_with_ns_db / 20) if after_ns else self.floor_gain
        self._gain = self.floor_gain
        self._open = False
        self._hold_left = 0
        self._floor_db: float | None = None
        block_s = self.block / config.rate
        self._rise = config.floor_rise_db_per_s * block_s
        # Maximum gain change per sample: linear ramps over the attack/release times.
        self._up = (1 - self.floor_gain) / max(1.0, config.attack_ms * config.rate / 1000)
        self._down = (1 - self.floor_gain) / max(1.0, config.release_ms * config.rate / 1000)
        self._hold = int(config.hold_ms * config.rate / 1000)
        self._span = max(1, round(10.0 / config.block_ms))
        self._recent: list[float] = [0.0] * (self._span - 1)
        self._gains: Float | None = None
        self._steady_len = 0

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def noise_floor_db(self) -> float | None:
        return self._floor_db

    def _decide(self, level_db: float, echo_power: float = 0.0, talking: bool = False) -> bool:
        cfg = self.config
        if self._floor_db is None:
            if level_db < -100.0:  # digital silence (stream start, muted source): no floor yet
                return self._open
            self._floor_db = level_db
        if level_db < self._floor_db:
            self._floor_db += 0.05 * (level_db - self._floor_db)
        else:
            # Rises slowly, and a third as fast while open: a floor that started too low (or a
            # room that got louder) is still found even if the gate never closes.
            rise = self._rise if not self._open else self._rise / 3
            self._floor_db = min(level_db, self._floor_db + rise)
        floor = self._floor_db
        if echo_power > 0.0:
            floor = 10 * math.log10(10 ** (floor / 10) + echo_power)
        above = level_db - floor
        if talking or above > cfg.open_db:
            self._open = True
            self._hold_left = self._hold
        elif self._open and above < cfg.close_db:
            self._hold_left -= self.block
            if self._hold_left <= 0:
                self._open = False
        elif self._open:
            self._hold_left = self._hold
        return self._open

    @property
    def gains(self) -> Float | None:
        """The last frame's per-sample gain (for tests and metrics)."""
        if self._gains is None and self._steady_len:
            self._gains = np.full(self._steady_len, self._gain)
        return self._gains

    def process(self, frame: Float, echo_power: float = 0.0, talking: bool = False) -> Float:
        """Gate one frame. ``echo_power``: residual echo the canceller knows it left (mean power
        per sample); it raises the thresholds, so leftover echo does not open the gate.
        ``talking``: the echo suppressor hears the agent over the echo (double talk), which the
        raised thresholds would hide: the gate opens."""
        frame = np.asarray(frame, dtype=np.float64)
        size = self.block
        blocks = len(frame) // size
        # A handful of blocks per frame: the decisions run on Python floats (numpy's per-call
        # overhead would dominate), only the block powers and the gain itself are vectorised.
        powers: list[float] = []
        if blocks:
            chunk = frame[: blocks * size].reshape(blocks, size)
            powers = (np.vecdot(chunk, chunk) / size).tolist()
        # Detection level: the last 10 ms (four blocks), sliding by one block. Smooth enough that
        # noise does not trip it, fast enough that a word's first 2.5 ms does.
        if self._floor_db is None and blocks and sum(powers) / blocks > 1e-10:
            self._recent = [sum(powers) / blocks] * (self._span - 1)
        history = self._recent + powers
        span = self._span
        self._recent = history[len(history) - (span - 1) :]
        floor_gain = self.floor_gain
        if self._floor_db is None or echo_power <= 10 ** (self._floor_db / 10):
            floor_gain = self.noise_floor_gain
        targets = [
            1.0
            if self._decide(10 * math.log10(sum(history[i : i + span]) / span + 1e-12), echo_power, talking)
            else floor_gain
            for i in range(blocks)
        ]
        self._gains = None
        self._steady_len = 0
        if blocks and len(frame) == blocks * size and targets.count(self._gain) == blocks:
            # Steady (fully open or fully closed): the common case, no ramp to compute.
            self._steady_len = len(frame)
            return frame * self._gain
        # Look-ahead inside the frame: if any block opens the gate, rise from the frame start.
        target = np.repeat(targets, size)
        if len(target) < len(frame):
            target = np.concatenate((target, np.full(len(frame) - len(target), targets[-1] if blocks else 1.0)))
        if 1.0 in targets:
            target[: targets.index(1.0) * size] = 1.0
        # Slew-limited gain, vectorised per run of equal target: at most ``up``/``down`` per sample.
        gains = np.empty(len(frame))
        g = self._gain
        edges = np.flatnonzero(np.diff(target)) + 1
        for lo, hi in zip(np.concatenate(([0], edges)), np.concatenate((edges, [len(frame)])), strict=True):
            t = float(target[lo])
            steps = np.arange(1, hi - lo + 1)
            run = np.minimum(t, g + self._up * steps) if t > g else np.maximum(t, g - self._down * steps)
            gains[lo:hi] = run
            g = float(run[-1])
        self._gain = g
        self._gains = gains
        return frame * gains
