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
- *Band bound*: each bin's gain is at most three times its Bark band's (SpeexDSP's bound), the
  band's gain taken by the same rule from the band's averaged powers. One bin that the noise
  pushes up for a frame no longer opens to a short tone: in steady noise 0.9 % of bin-frames
  open above three times the floor instead of 7.6 %, and 12.5 dB of noise is removed instead of
  9.9 (unit test's white noise, without the speech-presence weighting below).
- *Speech presence* (Cohen's OM-LSA in the form of SpeexDSP's preprocessor): each bin's gain
  is mixed with the floor, in the loudness domain, by the probability that the bin holds speech:
  from the posterior SNR and an a priori presence read off the prior averaged over frames and
  neighbouring bins (per bin and for the frame as a whole), averaged over frames itself so that
  one key click does not open a bin. Tuning set, in the chain: near-end PESQ-WB 2.55 -> 2.59,
  noise removed 18.8 -> 21.7 dB, kurtosis ratio 1.58 -> 1.46, for near-end STOI 0.964 -> 0.961,
  double-talk STOI 0.934 -> 0.930 and 1 ms more onset clipping.
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
    bands: int = 24  # Bark-spaced bands for the band gain that bounds each bin's gain
    band_limit: float = 3.0  # a bin's gain at most this many times its band's (0: no bound)
    presence_gain: bool = True  # weigh the gain by the probability of speech presence
    presence_knee: float = 0.3  # averaged prior at which the a priori presence is half-way up
    presence_hold: float = 0.5  # the presence probability's weight of its last frame


def _bark_bank(bins: int, bands: int, rate: int = 16000) -> Float:
    """Triangular Bark-spaced bands over ``bins``: row b holds each bin's weight in band b; the
    columns sum to one, so ``bank.T @ band_values`` interpolates bands back to bins."""
    hz = np.arange(bins) * (rate / 2) / (bins - 1)
    bark = 13.1 * np.arctan(0.00074 * hz) + 2.24 * np.arctan(1.85e-8 * hz * hz) + 1e-4 * hz
    centres = np.linspace(0.0, bark[-1], bands)
    position = np.interp(bark, centres, np.arange(bands))
    low = np.minimum(np.floor(position).astype(int), bands - 2)
    frac = position - low
    bank = np.zeros((bands, bins))
    bank[low, np.arange(bins)] = 1.0 - frac
    bank[low + 1, np.arange(bins)] = frac
    return bank


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
        bank = _bark_bank(bins, config.bands)
        self._to_bins = bank.T.copy()
        self._to_bands = bank / bank.sum(axis=1, keepdims=True)
        self._band_carry = np.zeros(config.bands)
        self._root_floor = np.sqrt(self.floor)
        self._zeta = np.zeros(bins)  # the prior averaged over frames and neighbouring bins
        self.speech = np.zeros(bins)  # probability of speech presence per bin, averaged over frames

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

        band_limit = None
        if cfg.band_limit > 0:
            band_power = self._to_bands @ power
            band_post = band_power / (self._to_bands @ self.noise + 1e-20)
            band_gain, self._band_carry, _, _ = self._lsa(band_post, self._band_carry)
            band_limit = cfg.band_limit * (self._to_bins @ band_gain)
        posterior = power / (self.noise + 1e-20)
        gain, self._carry, prior, v = self._lsa(posterior, self._carry)
        if band_limit is not None:
            np.minimum(gain, band_limit, out=gain)
        np.maximum(gain, self.floor, out=gain)
        if cfg.presence_gain:
            self._weigh_by_presence(gain, prior, v)
        return gain

    def _weigh_by_presence(self, gain: Float, prior: Float, v: Float) -> None:
        """gain <- (p sqrt(gain) + (1 - p) sqrt(floor))**2, p the probability of speech presence
        given the posterior, 1 / (1 + q / (1 - q) (1 + prior) exp(-v)) with q that of absence a
        priori, averaged over frames."""
        cfg = self.config
        self._zeta *= 0.7
        self._zeta += 0.3 * np.convolve(prior, self._spread, "same")
        mean = float(self._zeta.mean())
        frame = 0.1 + 0.899 * mean / (mean + cfg.presence_knee)  # the frame holds speech, a priori
        present = self._zeta / (self._zeta + cfg.presence_knee)
        present *= 0.8 * frame
        present += 0.199 * frame  # a priori presence of speech: 0.02 to 0.998
        odds = (1.0 + prior) * np.exp(-np.minimum(v, 50.0))
        odds *= (1.0 - present) / present
        odds += 1.0
        self.speech *= cfg.presence_hold
        self.speech += (1.0 - cfg.presence_hold) / odds
        np.sqrt(gain, out=gain)
        gain -= self._root_floor
        gain *= self.speech
        gain += self._root_floor
        gain *= gain

    def _lsa(self, posterior: Float, carry: Float) -> tuple[Float, Float, Float, Float]:
        """MMSE-LSA gains (before the floor) for these posterior SNRs with a decision-directed
        prior from ``carry``; the carry for the next frame, the prior and v = prior/(1+prior) *
        posterior."""
        cfg = self.config
        np.minimum(posterior, 1e4, out=posterior)
        prior = posterior - 1.0
        np.maximum(prior, 0.0, out=prior)
        prior *= 1.0 - cfg.prior_smoothing
        prior += cfg.prior_smoothing * carry
        np.maximum(prior, self._prior_floor, out=prior)
        wiener = prior / (1.0 + prior)
        v = wiener * posterior
        np.maximum(v, 1e-8, out=v)
        gain = wiener * np.exp(0.5 * exp1(v))
        np.minimum(gain, 1.0, out=gain)
        return gain, gain * gain * posterior, prior, v
