"""The microphone chain as shipped: (resample) -> echo canceller -> noise gate -> (resample) -> mute.

One :class:`Chain` holds all streaming state. :meth:`Chain.process` takes exactly one 10 ms
frame at the device rate (16 or 48 kHz); :meth:`Chain.push` takes chunks of any size (what
audio callbacks deliver) and returns whatever whole frames are ready; :func:`process_signals`
runs a whole recording and removes the chain's latency, so offline output lines up with input.
Mute is applied last, at the device rate, so muted output is exact zeros.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from offhook.audio import FRAME_MS, PROCESS_RATE
from offhook.audio.aec import AecConfig, EchoCanceller
from offhook.audio.gate import GateConfig, NoiseGate
from offhook.audio.highpass import HighPass
from offhook.audio.mute import PrivacyMute
from offhook.audio.ns import NoiseSuppressor, NsConfig
from offhook.audio.resample import DELAY_48K, FACTOR, Downsampler, Upsampler
from offhook.audio.suppress import ResidualEchoSuppressor, SuppressorConfig
from offhook.audio.synthesis import Analysis, GainFilter

Float = NDArray[np.float64]
# What the conversation meter needs per 16 kHz frame: raw mic, canceller + echo suppressor output
# (before noise suppression, gate and mute), echo reference, the echo the suppressor left.
FrameTap = Callable[[Float, Float, Float, float], None]


@dataclass(frozen=True)
class ChainConfig:
    rate: int = PROCESS_RATE  # device rate: 16000 or 48000
    aec: bool = True
    suppress: bool = True  # residual echo suppressor + comfort noise (needs aec)
    # Noise suppressor: on in `offhook audio process` and `run`; off by default here, for callers
    # that analyse the signal rather than send it on.
    ns: bool = False
    gate: bool = True
    highpass: bool = True  # 80 Hz high-pass ahead of everything (rumble, thumps, DC)
    low_latency: bool = True  # gains as a 3 ms FIR instead of a 10 ms overlap-add
    seed: int = 1
    aec_config: AecConfig = field(default_factory=AecConfig)
    gate_config: GateConfig = field(default_factory=GateConfig)
    ns_config: NsConfig = field(default_factory=NsConfig)
    suppressor_config: SuppressorConfig = field(default_factory=SuppressorConfig)


class Chain:
    def __init__(self, config: ChainConfig | None = None) -> None:
        self.config = config = config or ChainConfig()
        if config.rate not in (PROCESS_RATE, PROCESS_RATE * FACTOR):
            raise ValueError(f"unsupported rate {config.rate}: use 16000 or 48000")
        self.frame = config.rate * FRAME_MS // 1000
        self.highpass = HighPass() if config.highpass else None
        self.aec = EchoCanceller(config.aec_config) if config.aec else None
        n = PROCESS_RATE * FRAME_MS // 1000
        self.suppressor = (
            ResidualEchoSuppressor(n, config.suppressor_config) if config.aec and config.suppress else None
        )
        self.ns = NoiseSuppressor(n + 1, config.ns_config) if config.ns else None
        self.filter = GainFilter(n, config.low_latency, config.seed) if self.suppressor or self.ns else None
        self._analysis = Analysis(n) if self.ns and not self.aec else None
        self.gate = NoiseGate(config.gate_config, after_ns=config.ns) if config.gate else None
        self.mute = PrivacyMute(config.rate)
        self.echo_margin = 1.0  # the residual echo estimate counts as background for the gate
        self._resampled = config.rate != PROCESS_RATE
        self._down_mic = Downsampler()
        self._down_ref = Downsampler()
        self._up = Upsampler()
        self._echo_left = 0.0  # mean power per sample of the echo the suppressor left (for the gate)
        self._talking = False  # the suppressor hears the agent over the echo (for the gate)
        self._last_gain = np.ones(n + 1)
        self._staged = np.zeros((2, self.frame))  # mic, reference: a frame not yet whole
        self._fill = 0
        self._tap: FrameTap | None = None
        # With noise suppression on, the tap's "cleaned" is the echo suppressor's gain alone through a
        # filter of its own (the meter's detector is tuned without noise suppression); None otherwise.
        self._tap_filter: GainFilter | None = None
        self._tap_out: Float | None = None

    @property
    def tap(self) -> FrameTap | None:
        """Called once per frame with the 16 kHz (mic, cleaned, ref, residual echo): cleaned is the
        canceller's output after residual echo suppression, before noise suppression, gate and mute.
        The arrays are reused by the next frame, so a tap copies what it keeps (the meter does)."""
        return self._tap

    @tap.setter
    def tap(self, tap: FrameTap | None) -> None:
        self._tap = tap
        own = self.filter
        wanted = tap is not None and self.ns is not None and self.suppressor is not None
        self._tap_filter = GainFilter(own.frame, own.low_latency) if wanted and own is not None else None

    @property
    def latency(self) -> int:
        """Algorithmic delay from input to output, in device-rate samples."""
        own = self.filter.latency if self.filter else 0
        if not self._resampled:
            return own
        return own * FACTOR + round(2 * DELAY_48K)

    def process(self, mic: Float, ref: Float) -> Float:
        """One frame (10 ms at the device rate) in, one frame out."""
        if len(mic) != self.frame or len(ref) != self.frame:
            raise ValueError(f"frames must be {self.frame} samples")
        if self._resampled:
            mic = self._down_mic.process(mic)
            ref = self._down_ref.process(ref)
        mic = np.asarray(mic, dtype=np.float64)
        self._tap_out = None
        out = self._clean(self.highpass.process(mic) if self.highpass else mic, ref)
        if self._tap is not None:
            cleaned = out if self._tap_out is None else self._tap_out
            self._tap(mic, cleaned, np.asarray(ref, dtype=np.float64), self._echo_left)
        if self.gate:
            out = self.gate.process(out, self._echo_left * self.echo_margin, self._talking)
        if self._resampled:
            out = self._up.process(out)
        return self.mute.process(out)

    def _clean(self, mic: Float, ref: Float) -> Float:
        """Canceller, residual echo suppressor and noise suppressor, each handing on to the next."""
        self._echo_left, self._talking = 0.0, False
        live = bool(mic.any())  # digital zeros (a muted source) stay exact zeros
        if self.aec is not None:
            linear = self.aec.process(mic, ref)
            out, block, spectrum, power = linear.out, linear.block, linear.spectra[0], linear.powers[0]
        elif self._analysis is not None:
            out = mic
            block, spectrum, power = self._analysis.push(mic)
        else:
            return mic
        if self.filter is None:
            return out
        meter = self._tap_filter
        if not live:  # the filter's tail of the last frame, then exact zeros; no stage learns from them
            if meter is not None:
                self._tap_out = meter.pass_through(block)
            return self.filter.apply(block, spectrum, self._last_gain, None)
        gain = missing = None
        if self.suppressor is not None:
            if linear.echo_gone and self.filter.low_latency:
                self.suppressor.idle(linear)
                if self.ns is None:
                    return self.filter.pass_through(block)
                if meter is not None:
                    self._tap_out = meter.pass_through(block)
            else:
                echo = self.suppressor.process(linear, self.ns.noise if self.ns else None)
                gain, missing, self._echo_left, self._talking = echo
        if self.ns is not None:
            noise_gain = self.ns.process(power)
            if gain is None:
                gain = noise_gain
            else:
                if meter is not None:
                    self._tap_out = meter.apply(block, spectrum, gain.copy(), None)
                gain *= noise_gain
                if missing is not None:
                    # Comfort noise refills what the echo suppressor took, at the suppressed level.
                    missing *= noise_gain * noise_gain
        assert gain is not None
        self._last_gain = gain
        return self.filter.apply(block, spectrum, gain, missing)

    def push(self, mic: Float, ref: Float) -> Float:
        """Chunks of any (equal) length in; all whole frames that are ready come out."""
        if len(mic) != len(ref):
            raise ValueError("mic and reference chunks must have the same length")
        n, staged = self.frame, self._staged
        frames = (self._fill + len(mic)) // n
        out = np.empty(frames * n)
        pos = 0  # input samples used
        for k in range(frames):
            if self._fill:  # complete the staged frame first
                pos = n - self._fill
                staged[0, self._fill :] = mic[:pos]
                staged[1, self._fill :] = ref[:pos]
                self._fill = 0
                out[:n] = self.process(staged[0], staged[1])
                continue
            out[k * n : (k + 1) * n] = self.process(mic[pos : pos + n], ref[pos : pos + n])
            pos += n
        rest = len(mic) - pos
        staged[0, self._fill : self._fill + rest] = mic[pos:]
        staged[1, self._fill : self._fill + rest] = ref[pos:]
        self._fill += rest
        return out


def process_signals(mic: Float, ref: Float, config: ChainConfig | None = None) -> Float:
    """Run a whole recording through a fresh chain; output is aligned with and as long as ``mic``."""
    if len(mic) != len(ref):
        raise ValueError("mic and reference must have the same length")
    chain = Chain(config)
    n = len(mic)
    pad = chain.latency + chain.frame
    mic_p = np.concatenate((mic, np.zeros(pad)))
    ref_p = np.concatenate((ref, np.zeros(pad)))
    usable = len(mic_p) // chain.frame * chain.frame
    out = chain.push(mic_p[:usable], ref_p[:usable])
    return out[chain.latency : chain.latency + n]
