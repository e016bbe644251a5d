"""Noise suppression: removes the steady office noise under the agent's words, not only between them.

- *Noise estimate*: minima-controlled recursive averaging (MCRA, Cohen and Berdugo 2002), as in
  SpeexDSP's preprocessor: the power spectrum is smoothed in time and frequency, its minimum is
  tracked over windows of about a second, and where the smoothed power stands well above that
  minimum, speech is likely and the noise estimate holds still; elsewhere it follows the power.
  Words, and the echo while the far end talks, do not leak into the noise estimate.
- *Gain*: MMSE log-spectral amplitude (Ephraim and Malah 1985) with a decision-directed a priori
  SNR. The prior's smoothing and floor keep isolated noise peaks from opening short-lived bins,
  the source of musical noise; the gain never goes below ``floor_db``, so the office is turned
  down, not cut out. Tuning set: a prior smoothed at 0.98 (Ephraim and Malah's) cost the agent's
  words 0.024 STOI, 0.9 costs 0.011 for 0.01 PESQ and 3 dB less noise removed (the gate takes
  the noise down between words anyway).
- Frames of digital zeros (a muted source) never reach it: the chain passes them on as zeros and
  the noise estimate does not learn silence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import exp1

Float = NDArray[np.float64]


@dataclass(frozen=True)
class NsConfig:
    floor_db: float = -15.0  # least gain: the office turned down by this much
    prior_smoothing: float = 0.9  # decision-directed prior: weight of the last frame's estimate
    prior_floor_db: float = -25.0
    presence_ratio: float = 5.0  # smoothed power over its minimum above which speech is likely
    window_frames: int = 80  # minimum tracked over 0.8-1.6 s
    minimum_bias: float = 2.0  # noise over the tracked minimum of the smoothed power, at most


class NoiseSuppressor:
    def __init__(self, bins: int, config: NsConfig | None = None) -> None:
        self.config = config = config or NsConfig()
        self.floor = 10 ** (config.floor_db / 20)
        self._prior_floor = 10 ** (config.prior_floor_db / 10)
        self._smooth = np.zeros(bins)  # time- and frequency-smoothed power
        self._minimum = np.zeros(bins)
        self._window_min = np.zeros(bins)
        self._frames = 0
        self.noise = np.zeros(bins)
        self.presence = np.zeros(bins)  # smoothed speech-presence indicator per bin
        self._carry = np.zeros(bins)  # last frame's gain**2 * posterior SNR (decision-directed)
        self._spread = np.array([0.25, 0.5, 0.25])

    def process(self, power: Float) -> Float:
        """Per-bin gains for one frame's power spectrum."""
        cfg = self.config
        smoothed = np.convolve(power, self._spread, "same")
        if self._frames == 0:
            self._smooth[:] = smoothed
            self._minimum[:] = smoothed
            self._window_min[:] = smoothed
            self.noise[:] = power
        self._frames += 1
        self._smooth *= 0.8
        self._smooth += 0.2 * smoothed
        np.minimum(self._minimum, self._smooth, out=self._minimum)
        np.minimum(self._window_min, self._smooth, out=self._window_min)
        if self._frames % cfg.window_frames == 0:
            np.minimum(self._window_min, self._smooth, out=self._minimum)
            self._window_min[:] = self._smooth
        speech = self._smooth > cfg.presence_ratio * self._minimum
        self.presence *= 0.8
        self.presence += 0.2 * speech
        # Noise follows the power at a rate that falls to nothing where speech is likely, and
        # never stands above what the tracked minimum allows (its bias for this smoothing is
        # about 1.5-2): an estimate that started on a word, or a room that got quieter, comes
        # down within a window, where waiting for speech absence could take for ever.
        rate = 0.05 * (1.0 - self.presence)
        self.noise += rate * (power - self.noise)
        np.minimum(self.noise, cfg.minimum_bias * self._minimum, out=self.noise)

        posterior = power / (self.noise + 1e-20)
        np.minimum(posterior, 1e4, out=posterior)
        prior = posterior - 1.0
        np.maximum(prior, 0.0, out=prior)
        prior *= 1.0 - cfg.prior_smoothing
        prior += cfg.prior_smoothing * self._carry
        np.maximum(prior, self._prior_floor, out=prior)
        wiener = prior / (1.0 + prior)
        v = wiener * posterior
        np.maximum(v, 1e-8, out=v)
        gain = wiener * np.exp(0.5 * exp1(v))
        np.minimum(gain, 1.0, out=gain)
        self._carry = gain * gain * posterior
        np.maximum(gain, self.floor, out=gain)
        return gain
