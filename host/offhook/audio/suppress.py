"""Residual echo suppression: per-bin gains for the echo the linear canceller left.

The residual echo is the canceller's echo estimate times its *leak* (MDF's estimator: the
correlation between the variations of the output's power and of the echo estimate's power), spread
over neighbouring bins and held with the room's decay. Near-end speech is uncorrelated with the
echo estimate, so double talk does not inflate the leak.

The leak underestimates what is left when the echo path has just changed (the device moved) in a
reverberant room: the misadjusted filter's leftover is smeared over the room's tail, so its power
varies with the echo estimate's over hundreds of milliseconds, not frame by frame, and the
regression finds almost nothing (0.01 where the output holds as much echo as the estimate). The
linear filter re-converges slowly there (NLMS on speech over a 256 ms tail: seconds), so the
suppressor must take the leftover. A second estimate bounds the leak from below, shaped like
WebRTC AEC3's ERLE estimator but robust to double talk by minimum statistics (as a noise
estimator's): per band, the output's power less the noise over the echo estimate's, smoothed;
its minimum over the frames of the last 1.5 s in which the echo estimate stands above the noise,
times a bias. After a path change every such frame holds the leftover, so the minimum rises
within 1.5 s; in double talk the agent's pauses keep it down, and in steady single talk it stays
at or below the leak's share.

The gain is a Wiener gain with a decision-directed prior; what it removes of the background is
refilled with comfort noise of the tracked noise spectrum, so the far end never hears the line
"drop out". The gains are applied by :class:`offhook.audio.synthesis.GainFilter`, together with
the noise suppressor's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from offhook.audio.aec import Linear

Float = NDArray[np.float64]


class EchoGains(NamedTuple):
    gain: Float  # per-bin gain
    missing: Float | None  # background power the gain removed, for comfort noise (None: no comfort noise)
    left: float  # mean power per sample of the echo left after suppression: background for the gate
    talking: bool  # the agent talks over the echo: the output holds that much more than echo and noise


@dataclass(frozen=True)
class SuppressorConfig:
    # Double talk, for the gate: the output's power beyond ``over`` times the residual echo and
    # the noise, summed over bins, stands ``talk_db`` above the echo and noise together. The gate
    # goes by level, and the echo it is told about raises its threshold over the agent's words.
    # Tuning set (10 of its scenarios): 0 dB gave double-talk PESQ 1.89 but 29.6 dB single-talk
    # ERLE (noise bursts passed for words); 3 dB 1.87 and 32.2 dB; without it 1.82 and 39.1 dB.
    # A floor that stops suppression where the noise and the agent's words mask the residual
    # echo was tried as well: it cost 0.01 PESQ in double talk and was removed.
    talk_db: float = 3.0
    over: float = 4.0
    comfort_noise: bool = True
    # Least share of the echo estimate left in the output (see the module's docstring): per band,
    # the output's power less the noise over the echo estimate's (at most ``floor_max``),
    # smoothed by ``floor_smoothing`` per frame, its minimum over ``floor_windows`` windows of
    # ``floor_window_frames`` frames, times ``floor_bias`` (0 turns it off). Tuning set, ERLE 2-5 s
    # after a path change: 24.1 dB without it, 28.9 with a bias of 2, 30.4 with 3 (double-talk
    # PESQ-WB +0.003, STOI -0.0003), 30.9 with 6 under an earlier variant but STOI -0.0007;
    # smoothing 0.1 gave 38 dB and cost 0.12 PESQ in double talk (the agent's pauses no longer
    # reach the minimum); 1 s of windows gave 30.1 dB and -0.009 PESQ. Ratios to the microphone
    # instead of the echo estimate, or to the far end through the filter's magnitude response,
    # cost more in double talk for the same gain. What the floor adds is held with a decay of
    # ``floor_hold`` per frame (60 dB in 0.6 s, a reverberant office's RT60), the leak's part
    # with 0.6 as before: the leftover of a misadjusted filter rings with the room's whole tail.
    # Tuning set: 30.4 dB after a path change with 0.6, 33.5 with 0.8 (double-talk PESQ-WB
    # +0.013, STOI -0.0003), 36.6 with 0.9 (STOI -0.0023); holding the leak's part at 0.7 too
    # gave 33.4 dB but STOI -0.0018.
    floor_bands: int = 12
    floor_window_frames: int = 25
    floor_windows: int = 6
    floor_smoothing: float = 0.6
    floor_bias: float = 3.0
    floor_max: float = 4.0
    floor_hold: float = 0.8


class ResidualEchoSuppressor:
    def __init__(self, frame: int, config: SuppressorConfig | None = None) -> None:
        self.config = config = config or SuppressorConfig()
        self.frame = frame
        self._talk = 10 ** (config.talk_db / 10)
        bins = frame + 1
        self._echo_hold = np.zeros(bins)
        self._spread = np.array([0.25, 0.5, 0.25])
        self._residual_prev = 0.0
        self._noise = np.zeros(bins)
        self._smooth = np.zeros(bins)
        self._prior_carry = np.full(bins, 0.85)  # 0.85 * gain**2 * posterior of the last frame
        self._started = False
        self._comfort = config.comfort_noise
        self.gain_floor = 10 ** (-40 / 20)
        edges = np.unique(np.geomspace(2, bins - 1, config.floor_bands + 1).astype(int))
        bands = len(edges) - 1
        self._bandmat = np.zeros((bins, bands))
        for index in range(bands):
            self._bandmat[edges[index] : edges[index + 1], index] = 1.0
        self._ratio = np.zeros(bands)  # smoothed output over echo estimate, per band
        self._window_min = np.full(bands, np.inf)
        self._windows = np.full((config.floor_windows, bands), np.inf)  # minima of the last windows
        self._frames = 0
        self.floor = np.zeros(bins)  # least share of the echo estimate left in the output, per bin
        self._floor_hold = np.zeros(bins)
        self._residual = np.zeros(bins)

    def process(self, linear: Linear, noise: Float | None = None) -> EchoGains:
        """``noise``: a better noise estimate than this suppressor's own (the noise suppressor's)."""
        e_pow, y_pow = linear.powers
        leak = linear.leak
        # Spread the echo estimate over neighbouring bins and hold it over a few frames: non-linear
        # echo and misadjustment leak into neighbours and linger with the room's tail. The leak's
        # share and the floor's are held apart (see SuppressorConfig.floor_hold).
        y_spread = np.convolve(y_pow, self._spread, "same")
        background = self._noise if noise is None else noise
        self._track_floor(e_pow, y_pow, background)
        floor_part = self.floor * y_spread
        y_spread *= min(1.0, 2.0 * leak)
        self._echo_hold *= 0.6
        np.maximum(self._echo_hold, y_spread, out=self._echo_hold)
        # Nothing left in the filter's window (the far end paused for longer than the tail): the
        # leftover has died away with the room's tail, so it goes as fast as the leak's part.
        self._floor_hold *= self.config.floor_hold if y_pow.any() else 0.6
        np.maximum(self._floor_hold, floor_part, out=self._floor_hold)
        np.maximum(self._echo_hold, self._floor_hold, out=self._residual)

        self._track_noise(e_pow)
        residual = self._residual
        posterior = e_pow / (residual + 1e-12)
        # Decision-directed prior SNR: last frame's gain squared times its posterior SNR, and the
        # new posterior's excess; the first term was computed at the end of the last frame.
        prior = posterior - 1.0
        np.maximum(prior, 0.0, out=prior)
        prior *= 0.15
        prior += self._prior_carry
        gain = prior / (1.0 + prior)
        np.maximum(gain, self.gain_floor, out=gain)
        near = e_pow - self.config.over * residual - background
        np.maximum(near, 0.0, out=near)
        echo_sum, noise_sum = float(residual.sum()), float(background.sum())
        # Only where the echo stands above the noise: elsewhere the gate's own level rule hears the
        # agent, and noise bursts (keys, babble) would pass for words.
        talking = echo_sum > noise_sum and float(near.sum()) > self._talk * (echo_sum + noise_sum)
        gain2 = gain * gain
        # Mean power per sample of the echo left after suppression (Parseval, sqrt-Hann frame),
        # held over two frames: the gate counts it as background, not as the agent talking.
        left = 4.0 * float(gain2 @ residual) / (2 * self.frame) ** 2
        held = max(left, self._residual_prev)
        self._residual_prev = left
        np.minimum(posterior, 1e4, out=posterior)
        posterior *= gain2
        posterior *= 0.85
        self._prior_carry = posterior
        missing = None
        if self._comfort:
            missing = (1.0 - gain2) * np.minimum(self._noise, e_pow)
        return EchoGains(gain, missing, held, talking)

    def _track_floor(self, e_pow: Float, y_pow: Float, noise: Float) -> None:
        """Update the least share of the echo estimate left in the output (``self.floor``)."""
        cfg = self.config
        e_band, y_band, n_band = np.stack((e_pow, y_pow, noise)) @ self._bandmat
        valid = y_band > 2.0 * n_band  # the echo estimate stands above the noise
        e_band -= n_band
        e_band /= y_band + 1e-12
        np.clip(e_band, 0.0, cfg.floor_max, out=e_band)
        self._ratio += cfg.floor_smoothing * valid * (e_band - self._ratio)
        np.minimum(self._window_min, np.where(valid, self._ratio, np.inf), out=self._window_min)
        self._next_frame()

    def _next_frame(self) -> None:
        """Move the floor's windows on by a frame (in a far-end pause too: time passes)."""
        cfg = self.config
        self._frames += 1
        if self._frames % cfg.floor_window_frames:
            return
        self._windows[(self._frames // cfg.floor_window_frames) % cfg.floor_windows] = self._window_min
        self._window_min[:] = np.inf
        least = self._windows.min(axis=0)
        least[~np.isfinite(least)] = 0.0  # no frame with echo over the noise: nothing known
        self.floor = self._bandmat @ (cfg.floor_bias * least)

    def idle(self, linear: Linear) -> None:
        """No echo left (the far end has been silent for longer than the echo lasts): every gain
        would be within 1e-5 of one. The noise estimate keeps tracking for when the echo returns."""
        self._track_noise(linear.powers[0])
        self._next_frame()  # as process() would: no band's echo estimate stands above the noise
        self._echo_hold[:] = 0.0
        self._floor_hold[:] = 0.0
        self._residual_prev = 0.0

    def _track_noise(self, e_pow: Float) -> None:
        if not self._started:
            self._smooth[:] = e_pow
            self._noise[:] = e_pow
            self._started = True
        self._smooth += 0.3 * (e_pow - self._smooth)
        # Noise floor: falls halfway to the smoothed power at once, rises 0.2 % per frame.
        np.minimum(0.5 * (self._smooth + self._noise), 1.002 * self._noise, out=self._noise)
