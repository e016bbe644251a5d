"""The microphone chain as shipped: (resample) -> echo canceller -> noise gate -> (resample) -> mute.

One :class:`Chain` holds all streaming state. :meth:`Chain.process` takes exactly one 10 ms
frame at the device rate (16 or 48 kHz); :meth:`Chain.push` takes chunks of any size (what
audio callbacks deliver) and returns whatever whole frames are ready; :func:`process_signals`
runs a whole recording and removes the chain's latency, so offline output lines up with input.
Mute is applied last, at the device rate, so muted output is exact zeros.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from offhook.audio import FRAME_MS, PROCESS_RATE
from offhook.audio.aec import AecConfig, EchoCanceller
from offhook.audio.gate import GateConfig, NoiseGate
from offhook.audio.mute import PrivacyMute
from offhook.audio.resample import DELAY_48K, FACTOR, Downsampler, Upsampler

Float = NDArray[np.float64]


@dataclass(frozen=True)
class ChainConfig:
    rate: int = PROCESS_RATE  # device rate: 16000 or 48000
    aec: bool = True
    gate: bool = True
    aec_config: AecConfig = field(default_factory=AecConfig)
    gate_config: GateConfig = field(default_factory=GateConfig)


class Chain:
    def __init__(self, config: ChainConfig | None = None) -> None:
        self.config = config = config or ChainConfig()
        if config.rate not in (PROCESS_RATE, PROCESS_RATE * FACTOR):
            raise ValueError(f"unsupported rate {config.rate}: use 16000 or 48000")
        self.frame = config.rate * FRAME_MS // 1000
        self.aec = EchoCanceller(config.aec_config) if config.aec else None
        self.gate = NoiseGate(config.gate_config) if config.gate else None
        self.mute = PrivacyMute(config.rate)
        self.echo_margin = 1.0  # the residual echo estimate counts as background for the gate
        self._resampled = config.rate != PROCESS_RATE
        self._down_mic = Downsampler()
        self._down_ref = Downsampler()
        self._up = Upsampler()
        self._mic_buf = np.zeros(0)
        self._ref_buf = np.zeros(0)

    @property
    def latency(self) -> int:
        """Algorithmic delay from input to output, in device-rate samples."""
        aec = self.aec.latency if self.aec else 0
        if not self._resampled:
            return aec
        return aec * FACTOR + round(2 * DELAY_48K)

    def process(self, mic: Float, ref: Float) -> Float:
        """One frame (10 ms at the device rate) in, one frame out."""
        if len(mic) != self.frame or len(ref) != self.frame:
            raise ValueError(f"frames must be {self.frame} samples")
        if self._resampled:
            mic = self._down_mic.process(mic)
            ref = self._down_ref.process(ref)
        out = self.aec.process(mic, ref) if self.aec else np.asarray(mic, dtype=np.float64)
        if self.gate:
            echo = self.aec.suppressor.residual_power if self.aec and self.aec.suppressor else 0.0
            out = self.gate.process(out, echo * self.echo_margin)
        if self._resampled:
            out = self._up.process(out)
        return self.mute.process(out)

    def push(self, mic: Float, ref: Float) -> Float:
        """Chunks of any (equal) length in; all whole frames that are ready come out."""
        if len(mic) != len(ref):
            raise ValueError("mic and reference chunks must have the same length")
        self._mic_buf = np.concatenate((self._mic_buf, mic))
        self._ref_buf = np.concatenate((self._ref_buf, ref))
        frames = len(self._mic_buf) // self.frame
        outs = []
        for k in range(frames):
            sl = slice(k * self.frame, (k + 1) * self.frame)
            outs.append(self.process(self._mic_buf[sl], self._ref_buf[sl]))
        self._mic_buf = self._mic_buf[frames * self.frame :]
        self._ref_buf = self._ref_buf[frames * self.frame :]
        return np.concatenate(outs) if outs else np.zeros(0)


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
