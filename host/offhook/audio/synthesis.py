"""Applies per-bin gains to the chain's signal, with comfort noise, at 3 ms of delay.

The suppressors decide per-bin gains on a 50 %-overlap sqrt-Hann analysis of the canceller's
output; :class:`GainFilter` applies them. In low-latency mode (the default) this frame's gains
become a 97-tap linear-phase FIR (3 ms of delay at 16 kHz instead of a whole frame), cross-faded
from the previous frame's filter so gain changes never step. Otherwise the gains are applied by
overlap-add resynthesis (one frame of delay).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from offhook.audio import fft
from offhook.audio.aec import analysis_window

Float = NDArray[np.float64]
Complex = NDArray[np.complex128]


class Analysis:
    """The analysis the canceller makes of its output, for a chain without a canceller."""

    def __init__(self, frame: int) -> None:
        self.frame = frame
        self._block = np.zeros(2 * frame)
        self._window = analysis_window(2 * frame)

    def push(self, x: Float) -> tuple[Float, Complex, Float]:
        """The block (last two frames), its windowed spectrum and power spectrum."""
        n, block = self.frame, self._block
        block[:n] = block[n:]
        block[n:] = x
        spectrum = fft.rfft(block * self._window)
        return block, spectrum, spectrum.real**2 + spectrum.imag**2


class GainFilter:
    def __init__(self, frame: int, low_latency: bool = True, seed: int = 1) -> None:
        self.frame = frame
        self.low_latency = low_latency
        self.half = 48  # low-latency mode: FIR of 97 taps, 3 ms delay at 16 kHz
        self.latency = self.half if low_latency else frame
        size = 2 * frame
        bins = frame + 1
        self._window = analysis_window(size)
        self._taper = np.hanning(2 * self.half + 3)[1:-1]
        # Centred FIR from a zero-phase response: the last ``half`` taps and the first half + 1.
        self._tap_index = np.concatenate((np.arange(size - self.half, size), np.arange(self.half + 1)))
        self._taps = np.zeros(2 * self.half + 1)
        self._taps[self.half] = 1.0
        self._identity = self._taps  # pass_through's filter; never written in place
        self._fade = 0.5 - 0.5 * np.cos(np.pi * (np.arange(frame) + 0.5) / frame)
        self._response = np.zeros((2, bins), dtype=np.complex128)  # gain, comfort noise
        self._noise_tail = np.zeros(frame)
        self._overlap = np.zeros(frame)
        # Random phases for comfort noise, drawn once: 5 s of frames before repeating. Magnitude
        # sqrt(2), for twice the missing power: random phases spread a block's energy evenly over
        # the block, where the windowed signal it replaces had it concentrated under the window.
        rng = np.random.default_rng(seed)
        self._phasors = math.sqrt(2.0) * np.exp(2j * np.pi * rng.uniform(size=(500, bins)))
        self._phase_row = 0

    def apply(self, block: Float, spectrum: Complex, gain: Float, missing: Float | None) -> Float:
        """One frame out of the analysis ``block`` (time domain) or its windowed ``spectrum``,
        through ``gain``, plus comfort noise of ``missing`` power; delayed by :attr:`latency`."""
        if self.low_latency:
            return self._filter(block, gain, missing)
        out_spec = gain * spectrum
        if missing is not None:
            self._phase_row = (self._phase_row + 1) % len(self._phasors)
            out_spec += np.sqrt(missing) * self._phasors[self._phase_row]
        synthesised = self._window * fft.irfft(out_spec, 2 * self.frame)
        out = self._overlap + synthesised[: self.frame]
        self._overlap = synthesised[self.frame :]
        return out

    def pass_through(self, block: Float) -> Float:
        """Low-latency mode, every gain one: the frame passes unchanged, delayed like the FIR."""
        # The comfort noise's phases move on as if it had been made, so the noise after a quiet
        # spell is the same realisation as without the shortcut (the tests compare the two).
        self._phase_row = (self._phase_row + 1) % len(self._phasors)
        n, half = self.frame, self.half
        out = block[n - half : 2 * n - half].copy()
        if self._taps is not self._identity:
            # First frame: fade out of the last filter and end its comfort noise.
            out = self._faded_in(block, out)
            out += self._noise_tail
            self._noise_tail = np.zeros(n)
            self._taps = self._identity
        return out

    def _faded_in(self, block: Float, new: Float) -> Float:
        """``new`` (this frame through the next filter) cross-faded in from this frame through
        the last filter, in place."""
        old = np.correlate(block[self.frame - 2 * self.half :], self._taps, "valid")
        new -= old
        new *= self._fade
        new += old
        return new

    def _filter(self, block: Float, gain: Float, missing: Float | None) -> Float:
        """Comfort noise is synthetic, so it needs no look-ahead: random-phase spectra of the
        missing power, overlap-added with the sqrt-Hann window (one inverse FFT shared with the
        FIR design)."""
        n = self.frame
        response = self._response
        response[0] = gain
        if missing is not None:
            self._phase_row = (self._phase_row + 1) % len(self._phasors)
            np.multiply(np.sqrt(missing), self._phasors[self._phase_row], out=response[1])
        inverse = fft.irfft(response, 2 * n)
        taps = inverse[0, self._tap_index] * self._taper
        # The taps are symmetric (zero-phase response, symmetric taper): correlation = convolution.
        new = self._faded_in(block, np.correlate(block[n - 2 * self.half :], taps, "valid"))
        self._taps = taps
        if missing is None:
            return new
        noise = inverse[1] * self._window
        new += noise[:n]
        new += self._noise_tail
        self._noise_tail = noise[n:]
        return new
