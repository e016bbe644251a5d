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
- *Linear only*: the canceller hands on its output, its echo estimate, their spectra and the
  leak (how much of the echo estimate is still in the output); what a linear filter cannot remove
  is the residual echo suppressor's job (:mod:`offhook.audio.suppress`), one way down the chain.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from offhook.audio import FRAME_MS, PROCESS_RATE, fft

Float = NDArray[np.float64]
Complex = NDArray[np.complex128]
log = logging.getLogger(__name__)
# Partitions constrained each frame besides the strongest (see EchoCanceller._adapt). Measured on
# the bench scenes against constraining all of them every frame: one lost 0.09 PESQ in double
# talk; three keep ERLE and PESQ within 0.5 dB and 0.01, for 1.3 % more instructions than one.
CONSTRAINED_PER_FRAME = 3
# Frames after the filter's window went silent until a residual echo suppressor's echo estimate (held with a
# decay of 0.6 per frame) is 0.6**30 = 2e-7 of what it was: from then on no gain differs from one.
ECHO_GONE_FRAMES = 30
# Watchdog (SpeexDSP's): frames in a row whose output has four times the microphone's energy
# before the canceller is reset. An echo path change or a burst of double talk adds energy for a
# few frames at most; a filter that keeps adding it has run away.
RUNAWAY_FRAMES = 50


@dataclass(frozen=True)
class AecConfig:
    """Echo canceller settings. ``tail_ms``: echo path length after the bulk delay."""

    rate: int = PROCESS_RATE
    tail_ms: float = 128.0
    max_delay_ms: float = 320.0
    step: float = 1.0  # background NLMS step (per bin, normalised)
    delay_margin_frames: int = 2  # filter starts this many frames before the estimated delay

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
        size = self._size = max_lag + 1
        # Doubled rings (row i and row i + size hold the same frame): the last ``size`` frames,
        # newest first, are one reversed slice (a view) instead of a gather every frame.
        self._ref_hist = np.zeros((2 * size, self._bands))
        self._ref_sq = np.zeros(2 * size)
        self._ref_level = np.zeros(2 * size)
        self._active = 0  # active reference frames inside the window
        self._slow = np.zeros((2, self._bands))  # reference, microphone
        # Per lag: smoothed cross products and reference feature power (one array, one update).
        self._stats = np.zeros((2, size))
        self._stats[1] = 1e-9
        self._fresh = np.zeros((2, size))
        self._mic_pow = 1e-9
        self._pos = 0
        self._candidate = -1
        self._votes = 0
        self.delay: int | None = None
        self.confidence = 0.0

    def update(self, powers: Float, ref_active: bool) -> int | None:
        """Feed one frame's power spectra (rows: reference, microphone); returns the delay estimate
        in frames, or None while there is none."""
        levels = np.log(powers @ self._bandmat + 1e-10)
        features = levels - self._slow
        self._slow += 0.4 * features
        ref_feature, mic_feature = features
        size = self._size
        pos = self._pos = (self._pos + 1) % size
        level = 1.0 if ref_active else 0.0
        self._active += int(level - self._ref_level[pos])
        self._ref_hist[pos] = self._ref_hist[pos + size] = ref_feature
        self._ref_sq[pos] = self._ref_sq[pos + size] = float(ref_feature @ ref_feature)
        self._ref_level[pos] = self._ref_level[pos + size] = level
        if self._active < 1:
            return self.delay
        # Entry d of each view below is the reference frame d frames ago.
        lags = slice(pos + size, pos, -1)
        fresh = self._fresh
        np.matmul(self._ref_hist[lags], mic_feature, out=fresh[0])
        fresh[1] = self._ref_sq[lags]
        a = self._alpha
        self._stats += ((1 - a) * self._ref_level[lags]) * (fresh - self._stats)
        self._mic_pow = a * self._mic_pow + (1 - a) * float(mic_feature @ mic_feature)
        cross, ref_pow = self._stats
        corr = cross / np.sqrt(ref_pow * self._mic_pow + 1e-12)
        best = int(corr.argmax())
        self.confidence = float(corr[best])
        if best == self._candidate:
            self._votes += 1
        else:
            self._candidate, self._votes = best, 1
        if self.confidence > 0.25 and self._votes >= 8:
            self.delay = best
        return self.delay


class Linear(NamedTuple):
    """One frame of the canceller's output, and what the stages after it need to know about it.

    ``block`` and the spectra are overwritten by the next frame: use them before that."""

    out: Float  # microphone minus echo estimate
    echo: Float  # the echo estimate
    block: Float  # the last two frames of ``out``: the analysis block, time domain
    spectra: Complex  # sqrt-Hann windowed spectra of the block, rows: output, echo estimate
    powers: Float  # their power spectra
    leak: float  # share of the echo estimate's power still in the output (MDF's estimator)
    echo_gone: bool  # the far end has been silent for longer than its echo lasts (ECHO_GONE_FRAMES)


def analysis_window(size: int) -> Float:
    return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / size))


class EchoCanceller:
    """Streaming echo canceller: call :meth:`process` with one frame of mic and reference.

    Cost per 10 ms frame is dominated by numpy's per-call overhead, not arithmetic, so the hot
    path works on stacked arrays (foreground and background filter in one array, reference and
    microphone in one FFT) and reads the partitions' reference spectra as a view of a doubled
    ring instead of gathering them.
    """

    def __init__(self, config: AecConfig | None = None) -> None:
        self.config = config = config or AecConfig()
        self.resets = 0  # watchdog resets (see _watch)
        self._runaway = 0
        self._start()

    def _start(self) -> None:
        config = self.config
        n = self.frame = config.frame
        k = self.bins = n + 1
        self.max_lag = int(np.ceil(config.max_delay_ms * config.rate / 1000 / n))
        p = self.partitions = int(np.ceil(config.tail_ms * config.rate / 1000 / n)) + config.delay_margin_frames
        length = self._ring_len = self.max_lag + p + 1
        # Doubled rings of reference spectra (row i and i + length hold the same frame) and their
        # powers (for the normaliser).
        self._ring = np.zeros((2 * length, k), dtype=np.complex128)
        self._ring_pow = np.zeros((2 * length, k))
        self._pos = 0
        self._io = np.zeros((2, 2 * n))  # reference and microphone: previous and current frame
        self._weights = np.zeros((2, p, k), dtype=np.complex128)  # foreground (used), background
        self._products = np.empty((2, p, k), dtype=np.complex128)
        self._gradient = np.empty((p, k), dtype=np.complex128)
        # Partitions whose causality constraint is applied this frame (see _adapt): the strongest
        # and, in turn, CONSTRAINED_PER_FRAME others.
        per = CONSTRAINED_PER_FRAME
        self._constrain_rows = np.zeros(1 + per, dtype=np.intp)
        self._constrain_turns = (np.arange(p)[:, None] * per + np.arange(per)) % p
        self._constrain_turn = 0
        self._err_block = np.zeros(2 * n)
        self._no_echo = np.zeros(n)
        self._norm = np.zeros(k)
        self._davg1 = self._davg2 = self._dvar1 = self._dvar2 = 0.0
        self._delay = 0  # frames the reference is read back (estimate minus margin)
        self._since_audible = length  # frames since the reference was last above a 16-bit step
        self._stable = 0
        self._last_estimate: int | None = None
        self.estimator = DelayEstimator(k, self.max_lag)
        self._fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)  # 0 -> 1 over a frame
        # Regularisation: a reference quieter than about -60 dBFS does not drive adaptation.
        self._delta = 2 * n * 1e-6 * p
        self.adapt = True
        self._fg_erle = 0.0
        self._fg_converged = False
        self.adapted = False
        self._sum_adapt = 0.0
        self.foreground_updates = 0
        # Analysis of output and echo estimate (previous and current frame): the leak, the step
        # and the stages after the canceller all read these spectra.
        self._window = analysis_window(2 * n)
        self._blocks = np.zeros((2, 2 * n))
        self._means = np.zeros((2, k))  # slow means of output and echo-estimate power
        self._powers = np.zeros((2, k))  # last frame's output and echo-estimate power
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
        p = self.partitions
        weights = self._weights
        moved = np.zeros_like(weights)
        if 0 < shift < p:
            moved[:, : p - shift] = weights[:, shift:]
        elif 0 < -shift < p:
            moved[:, -shift:] = weights[:, : p + shift]
        weights[:] = moved
        self._delay = frames

    def process(self, mic: Float, ref: Float) -> Linear:
        n = self.frame
        io = self._io
        io[:, :n] = io[:, n:]
        io[0, n:] = ref
        io[1, n:] = mic
        ref, mic = io[0, n:], io[1, n:]
        spectra = fft.rfft(io)
        powers = spectra.real**2 + spectra.imag**2
        length = self._ring_len
        pos = self._pos = (self._pos + 1) % length
        for row in (pos, pos + length):
            self._ring[row] = spectra[0]
            self._ring_pow[row] = powers[0]
        ref_energy = float(ref @ ref) / n
        ref_active = ref_energy > 1e-7  # about -70 dBFS
        # Below a 16-bit sample's step (1e-10 < 2**-30): its echo cannot be heard.
        self._since_audible = 0 if ref_energy > 1e-10 else self._since_audible + 1

        estimate = self.estimator.update(powers, ref_active)
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

        # Partition j reads the reference spectrum delay + j frames back: rows top-1 down to top-p.
        p = self.partitions
        top = pos + length - self._delay + 1
        x = self._ring[top - p : top][::-1]
        live = bool(mic.any())  # a muted source's digital zeros: nothing to cancel, nothing to learn
        if live and self.adapt and ref_active:
            y_spec = np.multiply(self._weights, x, out=self._products).sum(axis=1)
            y = fft.irfft(y_spec, 2 * n)[:, n:]
            e = mic - y
            self._adapt(top, e[1], ref_energy)
            e_fg, y_fg = self._compare(mic, e, y)
        elif live and self._since_audible <= self._delay + p:  # row d holds frames d and d + 1 back
            # Not adapting: the background filter's output is not needed.
            y_fg = fft.irfft(np.multiply(self._weights[0], x, out=self._products[0]).sum(axis=0), 2 * n)[n:]
            e_fg = mic - y_fg
        else:
            # Every partition reads a silent reference (the far end paused for longer than the
            # filter spans): no echo to estimate. A third of the bench scenes' frames. (A copy:
            # ``mic`` is a view of the input buffer, which the next frame overwrites.)
            y_fg, e_fg = self._no_echo, mic.copy()
        if y_fg is not self._no_echo and not self._watch(mic, e_fg):
            y_fg, e_fg = self._no_echo, mic.copy()

        blocks = self._blocks
        blocks[:, :n] = blocks[:, n:]
        blocks[0, n:] = e_fg
        blocks[1, n:] = y_fg
        spectra = fft.rfft(blocks * self._window)
        powers = spectra.real**2 + spectra.imag**2
        if ref_active and live:
            self._update_leak(powers)
        self._powers = powers
        gone = self._since_audible > self._delay + p + ECHO_GONE_FRAMES
        return Linear(e_fg, y_fg, blocks[0], spectra, powers, self.leak, gone)

    def _watch(self, mic: Float, out: Float) -> bool:
        """Divergence watchdog: is the output usable? Not when it is non-finite (the canceller is
        reset at once) or 20 dB louder than the microphone (such a frame passes uncancelled: echo
        for a moment, not garbage). An output with four times the microphone's energy for
        RUNAWAY_FRAMES frames in a row resets the canceller too."""
        energy = float(out @ out)
        limit = float(mic @ mic) + self.frame * 1.5e-7
        if math.isfinite(energy) and energy <= 4.0 * limit:
            self._runaway = 0
            return True
        self._runaway += 1
        if math.isfinite(energy) and self._runaway < RUNAWAY_FRAMES:
            return energy <= 100.0 * limit
        self.resets += 1
        why = "ran away" if math.isfinite(energy) else "went non-finite"
        log.warning("echo canceller %s: reset (%d so far)", why, self.resets)
        self._runaway = 0
        self._start()
        return False

    def _update_leak(self, powers: Float) -> None:
        """Leak: how much of the echo estimate's power is still in the output (MDF's estimator).

        It is the regression slope of the output's power variations on the echo estimate's, so
        near-end speech (uncorrelated with the echo estimate) does not count as echo.
        """
        self._means += 0.01 * (powers - self._means)
        deviation = powers - self._means
        pey, pyy = (deviation @ deviation[1]).tolist()
        see, syy = powers.sum(axis=1).tolist()
        see += 1e-12
        rate = min(0.005, 0.02 * syy / see)
        self._pey = (1 - rate) * self._pey + rate * pey
        self._pyy = max((1 - rate) * self._pyy + rate * pyy, 1e-12)
        self._pey = max(self._pey, 0.005 * self._pyy)
        self.leak = min(1.0, self._pey / self._pyy)
        self._syy, self._see = syy, see

    def _adapt(self, top: int, e_bg: Float, ref_energy: float) -> None:
        n = self.frame
        p = self.partitions
        block = self._err_block
        block[n:] = e_bg
        err_spec = fft.rfft(block)
        self._norm += (0.35 / p) * (self._ring_pow[top - 1] - self._norm)
        see = float(e_bg @ e_bg) + 1e-9
        if not self.adapted:
            # Until the filter has converged the leak is meaningless: a global rate from the
            # far-end to error energy ratio (quiet reference, loud error: slow down).
            sxx = ref_energy * n
            rate = min(self.config.step * 0.25, 0.25 * sxx / see)
            step = rate / (self._norm + self._delta)
            self._sum_adapt += rate
            if self._sum_adapt > p and self.leak > 0.03:
                self.adapted = True
        else:
            # Per-bin optimal step (Valin): residual echo over error power. Double talk raises
            # the error, so adaptation slows by itself; an echo-path change raises the leak.
            e_pow, y_pow = self._powers
            rer = min(0.5, (1e-4 * ref_energy * n + 3.0 * self.leak * self._syy) / self._see)
            e_pow = e_pow + 1e-9
            residual = np.minimum(self.leak * y_pow, 0.5 * e_pow)
            residual *= 0.7
            residual += (0.3 * rer) * e_pow
            step = residual / (e_pow * (self._norm + self._delta))
            if self.config.step != 1.0:
                step *= self.config.step
        # Proportionate update (MDF): partitions holding more of the echo path adapt faster; the
        # shares sum to just under one, so the whole filter's step stays normalised.
        bg = self._weights[1]
        flat = bg.view(np.float64)
        energy = np.sqrt(np.vecdot(flat, flat) + 1e-12)
        energy += 0.1 * energy.max() + 1e-9
        prop = energy * (0.99 / energy.sum())
        grad = np.conjugate(self._ring[top - p : top][::-1], out=self._gradient)
        grad *= err_spec * step
        grad *= prop[:, None]
        bg += grad
        # Constraint (AUMDF, as in SpeexDSP): each partition must stay a causal block of n taps,
        # or it convolves circularly. Constraining every partition every frame costs two FFTs of
        # the whole filter; the partition holding most of the echo path (where a circular error
        # costs most) and three others in turn are enough: the unconstrained part grows slowly
        # between cuts.
        rows = self._constrain_rows
        turn = self._constrain_turn
        rows[0] = int(energy.argmax())
        rows[1:] = self._constrain_turns[turn]
        self._constrain_turn = (turn + 1) % len(self._constrain_turns)
        taps = fft.irfft(bg[rows], 2 * n)
        taps[:, n:] = 0.0
        bg[rows] = fft.rfft(taps)

    def _compare(self, mic: Float, e: Float, y: Float) -> tuple[Float, Float]:
        """Foreground/background decision (MDF): copy the better filter, reset a diverged one.

        ``e`` and ``y``: rows foreground, background (output and echo estimate)."""
        e_fg, e_bg = e
        sff, see = np.vecdot(e, e).tolist()
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
            self._fg_erle += 0.2 * (10 * math.log10(smic / (sff + 1e-12)) - self._fg_erle)
            self._fg_converged = self._fg_erle > 10.0
        if update and self._fg_converged and sff > 0.2 * smic and see > 0.25 * sff:
            update = False
        if update:
            self._davg1 = self._davg2 = self._dvar1 = self._dvar2 = 0.0
            self._weights[0] = self._weights[1]
            self.foreground_updates += 1
            # Cross-fade from the old foreground's output to the new one: no step in the output.
            fade = self._fade
            return e_fg + fade * (e_bg - e_fg), y[0] + fade * (y[1] - y[0])
        if (
            -delta * abs(delta) > 4.0 * sff * dbf
            or -self._davg1 * abs(self._davg1) > 4.0 * self._dvar1
            or -self._davg2 * abs(self._davg2) > 4.0 * self._dvar2
        ):
            self._weights[1] = self._weights[0]
            self._davg1 = self._davg2 = self._dvar1 = self._dvar2 = 0.0
        return e_fg, y[0]
