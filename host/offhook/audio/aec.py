"""Acoustic echo canceller: a partitioned-block frequency-domain adaptive filter (MDF family).

Why this shape:

- *Partitioned blocks* keep the latency at one 10 ms frame whatever the echo tail: a 250 ms
  desk-speakerphone tail is 25 partitions of one frame each, a headset's short path a handful.
- *Bulk delay* (up to 300 ms between what the softphone plays and what the microphone hears) is
  not spent in filter taps: :class:`DelayEstimator` finds it by correlating band envelopes of the
  reference and the microphone, and the filter reads the reference that many frames back.
- *Two filters* (Ochiai's foreground/background scheme, as in Valin's MDF): the background filter
  adapts fast with a per-bin normalised step; the foreground filter, whose output is used, only
  takes the background's coefficients when they are demonstrably better. Double talk makes the
  background diverge, never the foreground; the background is reset from the foreground when it
  has clearly gone wrong. After an echo-path change the background re-converges at full speed and
  is copied over as soon as it wins, so re-convergence is as fast as initial convergence.
- *Residual echo suppression* (:class:`ResidualEchoSuppressor`) removes what a linear filter
  cannot (loudspeaker non-linearity, misadjustment), with a gain that is smoothed
  (decision-directed) and comfort noise that keeps the background level constant, so the far end
  never hears the line "drop out".
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from offhook.audio import FRAME_MS, PROCESS_RATE

Float = NDArray[np.float64]
Complex = NDArray[np.complex128]


@dataclass(frozen=True)
class AecConfig:
    """Echo canceller settings. ``tail_ms``: echo path length after the bulk delay."""

    rate: int = PROCESS_RATE
    tail_ms: float = 128.0
    max_delay_ms: float = 320.0
    step: float = 1.0  # background NLMS step (per bin, normalised)
    delay_margin_frames: int = 2  # filter starts this many frames before the estimated delay
    suppress: bool = True  # residual echo suppressor + comfort noise
    low_latency: bool = True  # suppressor as a 3 ms FIR instead of a 10 ms overlap-add
    comfort_noise: bool = True
    seed: int = 1

    @property
    def frame(self) -> int:
        return self.rate * FRAME_MS // 1000


class DelayEstimator:
    """Bulk delay in frames, from the correlation of band-energy changes (ref vs mic).

    Log band energies are high-passed in time (onsets matter, the steady spectrum does not), and
    the microphone's features are correlated with the reference's at every lag 0..max_lag. The
    estimate only moves when a new lag has won for several consecutive frames with enough
    correlation: a wrong jump costs a re-convergence, a late one only a few frames.
    """

    def __init__(self, bins: int, max_lag: int, bands: int = 24, smoothing: float = 0.985) -> None:
        edges = np.unique(np.geomspace(3, bins - 1, bands + 1).astype(int))
        self._bandmat = np.zeros((bins, len(edges) - 1))
        for index, (lo, hi) in enumerate(itertools.pairwise(edges)):
            self._bandmat[lo:hi, index] = 1.0
        self._bands = len(edges) - 1
        self.max_lag = max_lag
        self._alpha = smoothing
        self._ref_hist = np.zeros((max_lag + 1, self._bands))
        self._ref_sq = np.zeros(max_lag + 1)
        self._lags = np.arange(max_lag + 1)
        self._ref_slow = np.zeros(self._bands)
        self._mic_slow = np.zeros(self._bands)
        self._ref_level = np.zeros(max_lag + 1)
        self._cross = np.zeros(max_lag + 1)
        self._ref_pow = np.full(max_lag + 1, 1e-9)
        self._mic_pow = 1e-9
        self._pos = 0
        self._candidate = -1
        self._votes = 0
        self.delay: int | None = None
        self.confidence = 0.0

    def update(self, ref_power: Float, mic_power: Float, ref_active: bool) -> int | None:
        """Feed one frame's power spectra; returns the current delay estimate (frames) or None."""
        levels = np.log(np.stack((ref_power, mic_power)) @ self._bandmat + 1e-10)
        slow = np.stack((self._ref_slow, self._mic_slow))
        ref_feature, mic_feature = levels - slow
        self._ref_slow += 0.4 * (levels[0] - self._ref_slow)
        self._mic_slow += 0.4 * (levels[1] - self._mic_slow)
        size = self.max_lag + 1
        self._pos = (self._pos + 1) % size
        self._ref_hist[self._pos] = ref_feature
        self._ref_sq[self._pos] = float(ref_feature @ ref_feature)
        self._ref_level[self._pos] = 1.0 if ref_active else 0.0
        # Entry d of each vector below is the reference frame d frames ago.
        order = (self._pos - self._lags) % size
        active = self._ref_level[order]
        if active.sum() < 1:
            return self.delay
        dots = (self._ref_hist @ mic_feature)[order]
        squares = self._ref_sq[order]
        a = self._alpha
        weight = (1 - a) * active
        self._cross = self._cross * (1 - weight) + weight * dots
        self._ref_pow = self._ref_pow * (1 - weight) + weight * squares
        self._mic_pow = a * self._mic_pow + (1 - a) * float(mic_feature @ mic_feature)
        corr = self._cross / np.sqrt(self._ref_pow * self._mic_pow + 1e-12)
        best = int(np.argmax(corr))
        self.confidence = float(corr[best])
        if best == self._candidate:
            self._votes += 1
        else:
            self._candidate, self._votes = best, 1
        if self.confidence > 0.25 and self._votes >= 8:
            self.delay = best
        return self.delay


class ResidualEchoSuppressor:
    """Per-bin suppression of the echo the linear filter left, plus comfort noise.

    Runs on a 50 %-overlap sqrt-Hann STFT of the canceller's output (one frame of extra latency).
    The residual echo is the echo estimate's spectrum times a *leak* factor, estimated like MDF
    does: the correlation between the variations of the output's power and of the echo estimate's
    power. Near-end speech is uncorrelated with the echo estimate, so double talk does not inflate
    the leak, and the suppressor does not eat the agent's voice. Removed noise is refilled with
    comfort noise of the tracked noise spectrum.
    """

    def __init__(self, frame: int, comfort_noise: bool = True, seed: int = 1, low_latency: bool = False) -> None:
        self.frame = frame
        self.low_latency = low_latency
        self.half = 48  # low-latency mode: FIR of 97 taps, 3 ms delay at 16 kHz
        self.latency = self.half if low_latency else frame
        self._taper = np.hanning(2 * self.half + 3)[1:-1]
        self._taps = np.zeros(2 * self.half + 1)
        self._taps[self.half] = 1.0
        self._cn_taps = np.zeros(2 * self.half + 1)
        self._e_prev_time = np.zeros(2 * self.half)
        self._white_prev = np.zeros(2 * self.half)
        self._current = np.zeros(frame)
        self._noise_row = 0
        self._fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(frame) + 0.5) / frame)
        self._white = np.random.default_rng(seed + 1).standard_normal((500, frame))
        size = 2 * frame
        self._window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size))
        bins = frame + 1
        self._e_prev = np.zeros(frame)
        self._y_prev = np.zeros(frame)
        self._overlap = np.zeros(frame)
        self._echo_hold = np.zeros(bins)
        self.residual_power = 0.0
        self._residual_prev = 0.0
        self.overestimate = 1.0
        self._noise = np.zeros(bins)
        self._smooth = np.zeros(bins)
        self._gain = np.ones(bins)
        self._post_prev = np.ones(bins)
        self._started = False
        self._comfort = comfort_noise
        # Random-phase unit vectors for comfort noise, drawn once: 5 s of frames before repeating.
        rng = np.random.default_rng(seed)
        self._phasors = np.exp(2j * np.pi * rng.uniform(size=(500, frame + 1)))
        self._phase_row = 0
        self.gain_floor = 10 ** (-40 / 20)

    def analyse(self, error: Float, echo: Float) -> tuple[Complex, Complex]:
        """Windowed spectra of the output and of the echo estimate for this frame."""
        self._current = error
        w = self._window
        block = np.stack((np.concatenate((self._e_prev, error)), np.concatenate((self._y_prev, echo))))
        e_spec, y_spec = np.fft.rfft(block * w, axis=1)
        self._e_prev, self._y_prev = error, echo
        return e_spec, y_spec

    def process(self, e_spec: Complex, y_pow: Float, leak: float) -> Float:
        """Suppress one analysed frame; returns one frame of output, delayed by :attr:`latency`."""
        w = self._window
        e_pow = e_spec.real**2 + e_spec.imag**2
        # Spread the echo estimate over neighbouring bins and hold it over a few frames: non-linear
        # echo and misadjustment leak into neighbours and linger with the room's tail.
        y_spread = y_pow.copy()
        y_spread[1:] += 0.5 * y_pow[:-1]
        y_spread[:-1] += 0.5 * y_pow[1:]
        y_spread *= 0.5
        self._echo_hold = np.maximum(0.6 * self._echo_hold, (2.0 * leak if leak < 0.5 else 1.0) * y_spread)

        if not self._started:
            self._smooth[:] = e_pow
            self._noise[:] = e_pow
            self._started = True
        self._smooth += 0.3 * (e_pow - self._smooth)
        self._noise = np.where(
            self._smooth < self._noise, self._noise + 0.5 * (self._smooth - self._noise), self._noise * 1.002
        )

        residual = self.overestimate * self._echo_hold
        posterior = e_pow / (residual + 1e-12)
        prior = 0.85 * self._gain**2 * self._post_prev + 0.15 * np.maximum(posterior - 1.0, 0.0)
        gain = prior / (1.0 + prior)
        gain = np.maximum(gain, self.gain_floor)
        # Mean power per sample of the echo left after suppression (Parseval, sqrt-Hann frame),
        # held over two frames: the gate counts it as background, not as the agent talking.
        left = 4.0 * float(np.sum(gain**2 * residual)) / (2 * self.frame) ** 2
        self.residual_power = max(left, self._residual_prev)
        self._residual_prev = left
        self._gain = gain
        self._post_prev = np.minimum(posterior, 1e4)
        missing = np.maximum(1.0 - gain**2, 0.0) * np.minimum(self._noise, e_pow) if self._comfort else None
        if self.low_latency:
            return self._filter(gain, missing)
        out_spec = gain * e_spec
        if missing is not None:
            self._phase_row = (self._phase_row + 1) % len(self._phasors)
            out_spec = out_spec + np.sqrt(missing) * self._phasors[self._phase_row]
        block = w * np.fft.irfft(out_spec, 2 * self.frame)
        out = self._overlap + block[: self.frame]
        self._overlap = block[self.frame :].copy()
        return out

    def _fir(self, response: Float) -> Float:
        """Short linear-phase FIRs with the given (zero-phase) magnitude responses (one per row)."""
        h = np.fft.irfft(response, 2 * self.frame, axis=-1)
        half = self.half
        return np.concatenate((h[..., -half:], h[..., : half + 1]), axis=-1) * self._taper

    def _filter(self, gain: Float, missing: Float | None) -> Float:
        """Low-latency mode: apply this frame's gains to this frame as a short linear-phase FIR
        (``half`` samples of delay instead of a whole frame), cross-fading from the previous
        frame's filter so gain changes never step. Comfort noise is white noise shaped the same way.
        """
        e = self._e_prev_time
        frame = self._current
        if missing is not None:
            # White noise of unit variance has STFT power frame (sqrt-Hann, 2*frame points).
            taps, shape = self._fir(np.stack((gain, np.sqrt(missing / self.frame))))
        else:
            taps, shape = self._fir(gain), None
        history = np.concatenate((e, frame))
        new = np.convolve(history, taps, mode="valid")[-self.frame :]
        old = np.convolve(history, self._taps, mode="valid")[-self.frame :]
        out = old + self._fade * (new - old)
        self._taps = taps
        self._e_prev_time = history[-(2 * self.half) :]
        if shape is not None:
            self._noise_row = (self._noise_row + 1) % len(self._white)
            white = np.concatenate((self._white_prev, self._white[self._noise_row]))
            cn_new = np.convolve(white, shape, mode="valid")[-self.frame :]
            cn_old = np.convolve(white, self._cn_taps, mode="valid")[-self.frame :]
            out = out + cn_old + self._fade * (cn_new - cn_old)
            self._cn_taps = shape
            self._white_prev = white[-(2 * self.half) :]
        return out


class EchoCanceller:
    """Streaming echo canceller: call :meth:`process` with one frame of mic and reference.

    Output latency is :attr:`latency` samples (one frame with the suppressor, none without).
    """

    def __init__(self, config: AecConfig | None = None) -> None:
        self.config = config = config or AecConfig()
        n = self.frame = config.frame
        self.bins = n + 1
        self.max_lag = int(np.ceil(config.max_delay_ms * config.rate / 1000 / n))
        self.partitions = int(np.ceil(config.tail_ms * config.rate / 1000 / n)) + config.delay_margin_frames
        self._ring_len = self.max_lag + self.partitions + 1
        self._ring = np.zeros((self._ring_len, self.bins), dtype=np.complex128)
        self._pos = 0
        self._ref_prev = np.zeros(n)
        self._mic_prev = np.zeros(n)
        self._fg = np.zeros((self.partitions, self.bins), dtype=np.complex128)
        self._bg = np.zeros((self.partitions, self.bins), dtype=np.complex128)
        self._norm = np.zeros(self.bins)
        self._davg1 = self._davg2 = self._dvar1 = self._dvar2 = 0.0
        self._delay = 0  # frames the reference is read back (estimate minus margin)
        self._stable = 0
        self._last_estimate: int | None = None
        self.estimator = DelayEstimator(self.bins, self.max_lag)
        self.suppressor: ResidualEchoSuppressor | None = None
        if config.suppress:
            self.suppressor = ResidualEchoSuppressor(n, config.comfort_noise, config.seed, config.low_latency)
        self.latency = self.suppressor.latency if self.suppressor else 0
        self._zeros = np.zeros(n)
        self._fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)  # 0 -> 1 over a frame
        # Regularisation: a reference quieter than about -60 dBFS does not drive adaptation.
        self._delta = 2 * n * 1e-6 * self.partitions
        self.adapt = True
        self._fg_erle = 0.0
        self._fg_converged = False
        self.adapted = False
        self._sum_adapt = 0.0
        self.foreground_updates = 0
        self._analysis = self.suppressor or ResidualEchoSuppressor(n, comfort_noise=False)
        self._e_mean = np.zeros(self.bins)
        self._y_mean = np.zeros(self.bins)
        self._e_pow = np.zeros(self.bins)
        self._y_pow = np.zeros(self.bins)
        self._pey = self._pyy = 1.0
        self._syy = self._see = 1.0
        self.leak = 1.0

    @property
    def delay_samples(self) -> int:
        return self._delay * self.frame

    def _set_delay(self, frames: int) -> None:
        """Move the reference read position; shift the filters so they stay aligned."""
        shift = frames - self._delay
        if shift == 0:
            return
        for weights in (self._fg, self._bg):
            moved = np.zeros_like(weights)
            if shift > 0 and shift < self.partitions:
                moved[: self.partitions - shift] = weights[shift:]
            elif shift < 0 and -shift < self.partitions:
                moved[-shift:] = weights[: self.partitions + shift]
            weights[:] = moved
        self._delay = frames

    def process(self, mic: Float, ref: Float) -> Float:
        n = self.frame
        mic = np.asarray(mic, dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        both = np.stack((np.concatenate((self._ref_prev, ref)), np.concatenate((self._mic_prev, mic))))
        ref_spec, mic_spec = np.fft.rfft(both, axis=1)
        self._ref_prev, self._mic_prev = ref, mic
        self._pos = (self._pos + 1) % self._ring_len
        self._ring[self._pos] = ref_spec
        ref_energy = float(ref @ ref) / n
        ref_active = ref_energy > 1e-7  # about -70 dBFS

        ref_pow = ref_spec.real**2 + ref_spec.imag**2
        mic_pow = mic_spec.real**2 + mic_spec.imag**2
        estimate = self.estimator.update(ref_pow, mic_pow, ref_active)
        if estimate is not None:
            # A fresh estimate is often a few frames late: until it has held for a second, read
            # the reference earlier (extra margin) so the echo's start stays inside the filter.
            # Once settled, a wobble of one frame is absorbed by the margin and ignored.
            last = self._last_estimate
            if last is not None and self._stable >= 100 and abs(estimate - last) <= 1:
                estimate = last
            self._stable = self._stable + 1 if estimate == last else 0
            self._last_estimate = estimate
            extra = 0 if self._stable >= 100 else self.config.delay_margin_frames
            self._set_delay(max(0, estimate - self.config.delay_margin_frames - extra))

        idx = (self._pos - self._delay - np.arange(self.partitions)) % self._ring_len
        x = self._ring[idx]
        spectra = np.stack((np.einsum("pk,pk->k", self._fg, x), np.einsum("pk,pk->k", self._bg, x)))
        y_fg, y_bg = np.fft.irfft(spectra, 2 * n, axis=1)[:, n:]
        e_fg = mic - y_fg
        e_bg = mic - y_bg

        if self.adapt and ref_active:
            self._adapt(x, e_bg, ref_energy)
            e_fg, y_fg = self._compare(mic, e_fg, e_bg, y_fg, y_bg)

        e_spec, y_spec = self._analysis.analyse(e_fg, y_fg)
        e_pow = e_spec.real**2 + e_spec.imag**2
        y_pow = y_spec.real**2 + y_spec.imag**2
        if ref_active:
            self._update_leak(e_pow, y_pow)
        self._e_pow, self._y_pow = e_pow, y_pow
        if self.suppressor is None:
            return e_fg
        return self.suppressor.process(e_spec, y_pow, self.leak)

    def _update_leak(self, e_pow: Float, y_pow: Float) -> None:
        """Leak: how much of the echo estimate's power is still in the output (MDF's estimator).

        It is the regression slope of the output's power variations on the echo estimate's, so
        near-end speech (uncorrelated with the echo estimate) does not count as echo.
        """
        self._e_mean += 0.01 * (e_pow - self._e_mean)
        self._y_mean += 0.01 * (y_pow - self._y_mean)
        de = e_pow - self._e_mean
        dy = y_pow - self._y_mean
        see = float(e_pow.sum()) + 1e-12
        syy = float(y_pow.sum())
        rate = min(0.005, 0.02 * syy / see)
        self._pey = (1 - rate) * self._pey + rate * float(de @ dy)
        self._pyy = (1 - rate) * self._pyy + rate * float(dy @ dy)
        self._pyy = max(self._pyy, 1e-12)
        self._pey = max(self._pey, 0.005 * self._pyy)
        self.leak = min(1.0, self._pey / self._pyy)
        self._syy, self._see = syy, see

    def _adapt(self, x: Complex, e_bg: Float, ref_energy: float) -> None:
        n = self.frame
        err_spec = np.fft.rfft(np.concatenate((self._zeros, e_bg)))
        x_pow = x[0].real ** 2 + x[0].imag ** 2
        self._norm += 0.35 / self.partitions * (x_pow - self._norm)
        see = float(e_bg @ e_bg) + 1e-9
        if not self.adapted:
            # Until the filter has converged the leak is meaningless: a global rate from the
            # far-end to error energy ratio (quiet reference, loud error: slow down).
            sxx = ref_energy * n
            rate = min(self.config.step * 0.25, 0.25 * sxx / see)
            step = rate / (self._norm + self._delta)
            self._sum_adapt += rate
            if self._sum_adapt > self.partitions and self.leak > 0.03:
                self.adapted = True
        else:
            # Per-bin optimal step (Valin): residual echo over error power. Double talk raises
            # the error, so adaptation slows by itself; an echo-path change raises the leak.
            e_pow, y_pow = self._e_pow, self._y_pow
            rer = min(0.5, (1e-4 * ref_energy * n + 3.0 * self.leak * self._syy) / self._see)
            residual = np.minimum(self.leak * y_pow, 0.5 * (e_pow + 1e-9))
            residual = 0.7 * residual + 0.3 * rer * (e_pow + 1e-9)
            step = self.config.step * residual / ((e_pow + 1e-9) * (self._norm + self._delta))
        # Proportionate update (MDF): partitions holding more of the echo path adapt faster; the
        # shares sum to just under one, so the whole filter's step stays normalised.
        energy = np.sqrt((self._bg.real**2 + self._bg.imag**2).sum(axis=1) + 1e-12)
        energy += 0.1 * energy.max() + 1e-9
        prop = 0.99 * energy / energy.sum()
        grad = np.conj(x) * (err_spec * step) * prop[:, None]
        # Gradient constraint: keep each partition a causal block of n taps (linear, not circular).
        taps = np.fft.irfft(grad, 2 * n, axis=1)
        taps[:, n:] = 0.0
        self._bg += np.fft.rfft(taps, axis=1)

    def _compare(self, mic: Float, e_fg: Float, e_bg: Float, y_fg: Float, y_bg: Float) -> tuple[Float, Float]:
        """Foreground/background decision (MDF): copy the better filter, reset a diverged one."""
        sff = float(e_fg @ e_fg)
        see = float(e_bg @ e_bg)
        diff = e_fg - e_bg
        dbf = float(diff @ diff) + 1e-12
        delta = sff - see
        self._davg1 = 0.6 * self._davg1 + 0.4 * delta
        self._davg2 = 0.85 * self._davg2 + 0.15 * delta
        self._dvar1 = 0.36 * self._dvar1 + 0.16 * sff * dbf
        self._dvar2 = 0.7225 * self._dvar2 + 0.0225 * sff * dbf
        update = (
            delta * abs(delta) > sff * dbf
            or self._davg1 * abs(self._davg1) > 0.5 * self._dvar1
            or self._davg2 * abs(self._davg2) > 0.25 * self._dvar2
        )
        # Double-talk guard: while the foreground still leaves more than a fifth of the microphone
        # energy (near-end speech is present, or the path changed), the background must be far
        # better (6 dB) to win: in double talk it cannot be, after a path change it soon is.
        smic = float(mic @ mic) + 1e-12
        if not self._fg_converged:
            # The guard only makes sense once the foreground has been good (10 dB at some point);
            # before that every improvement is welcome.
            self._fg_erle += 0.2 * (10 * np.log10(smic / (sff + 1e-12)) - self._fg_erle)
            self._fg_converged = self._fg_erle > 10.0
        if update and self._fg_converged and sff > 0.2 * smic and see > 0.25 * sff:
            update = False
        if update:
            self._davg1 = self._davg2 = self._dvar1 = self._dvar2 = 0.0
            self._fg[:] = self._bg
            self.foreground_updates += 1
            # Cross-fade from the old foreground's output to the new one: no step in the output.
            fade = self._fade
            return (1 - fade) * e_fg + fade * e_bg, (1 - fade) * y_fg + fade * y_bg
        if (
            -delta * abs(delta) > 4.0 * sff * dbf
            or -self._davg1 * abs(self._davg1) > 4.0 * self._dvar1
            or -self._davg2 * abs(self._davg2) > 4.0 * self._dvar2
        ):
            self._bg[:] = self._fg
            self._davg1 = self._davg2 = self._dvar1 = self._dvar2 = 0.0
        return e_fg, y_fg
