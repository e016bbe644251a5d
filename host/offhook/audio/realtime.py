"""Real-time pipeline: headset <-> offhook chain <-> softphone.

Two I/O backends drive the same chain, one module each: ``pulse``
(:mod:`offhook.audio.realtime_pulse`, the default where a PulseAudio or pipewire-pulse server
answers) and ``portaudio`` (:mod:`offhook.audio.realtime_portaudio`). Which reference sample goes
with which mic sample is decided without I/O by :class:`offhook.audio.align.ReferenceAligner`;
the daemon's mute datagrams and call events (answered with figures) arrive through
:class:`offhook.audio.control.ControlServer`.

Streams (either backend):

- reference in (``offhook_far`` monitor: what the softphone plays) -> headset speaker out; every
  sample played is also kept as the AEC reference
- headset mic in -> chain (AEC with that reference, gate, mute) -> virtual mic out
  (``offhook_mic_sink``, remapped as source ``offhook_mic``)

Clock drift (the null sinks run on the system clock, the headset on its crystal) is absorbed where
the clocks change: by a :class:`DriftBuffer` between callbacks (PortAudio) or a
:class:`DriftResampler` steered on the server's queue (pulse). Added latency = chain latency + one
frame + that buffer or queue + the server's buffering of the capture stream.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from offhook.audio import BACKENDS, FRAME_MS
from offhook.audio.aec import AecConfig
from offhook.audio.align import ReferenceAligner
from offhook.audio.chain import Chain, ChainConfig
from offhook.audio.control import CallMeters, ControlServer, control_socket_path
from offhook.audio.drift import DriftBuffer
from offhook.audio.pulse import RATE, PulseError, ensure_virtual_devices
from offhook.audio.realtime_portaudio import PortAudioBackend
from offhook.audio.realtime_pulse import PulseBackend

if TYPE_CHECKING:
    from offhook.recording.calls import CallRecorders


@dataclass
class RealtimeConfig:
    mic_device: str | None = None
    speaker_device: str | None = None
    aec: bool = True
    gate: bool = True
    ns: bool = True
    highpass: bool = True
    tail_ms: float = 128.0
    setup_devices: bool = True
    rate: int = RATE
    buffer_frames: float = 1.25  # drift-buffer target, in 10 ms frames
    # Playback callback period: shorter than a frame keeps PulseAudio's playback buffer small.
    period_ms: float = 5.0
    # Capture callback period: one whole frame. The chain waits for whole frames anyway, so a
    # shorter capture period adds no latency back, only wakeups (capture streams on the ALSA
    # pulse plugin also poll busily between periods: half the periods, half that CPU).
    capture_period_ms: float = 10.0
    # Backlog a drift buffer may hold beyond its target before the excess is dropped: after a
    # stalled callback the PI loop alone (at most 2000 ppm) would take a minute to drain it.
    max_excess_frames: float = 4.0
    control_socket: Path | None = None
    # SCHED_FIFO priority for the callback threads; 0 leaves them alone (the default: on a
    # saturated 2-core machine the measurements were inconclusive, see docs/audio.md).
    rt_priority: int = 0
    # pulse backend: what each playback stream keeps queued in the server just before the next
    # frame is written (the sink's own latency included): slack for a late wakeup.
    playback_queue_ms: float = 20.0
    backend: str = "auto"  # "pulse", "portaudio", or "auto" (pulse when libpulse reaches a server)
    # Call recording (docs/recording.md): where, to whose age key, under which agent's name; None: off.
    recording: RecordingConfig | None = None


@dataclass
class RecordingConfig:
    directory: Path
    recipient: str
    agent: str


@dataclass
class Stats:
    frames: int = 0
    backend: str = ""
    stream_xruns: int = 0  # the server's underflows/overflows (pulse) or PortAudio's status flags
    capture_holes: int = 0  # gaps the server reported in captured audio (pulse backend)
    playback_resyncs: int = 0  # playback streams re-anchored after falling behind for good (pulse)
    buffer_underruns: int = 0
    buffer_overruns: int = 0
    ref_missing: int = 0  # mic periods whose echo reference was not (all) played yet: zeros
    ref_relocks: int = 0  # times the mic/reference alignment was set afresh or moved after short periods
    mic_dropped: int = 0  # mic frames not sent because the server already held a frame too many (pulse)
    ref_catch_ups: int = 0  # times mic frames stopped waiting for a reference that fell behind for good (pulse)
    stretches: int = 0  # short buffer reads concealed by reading slower (not silence)
    realtime_threads: int = 0  # callback threads that got SCHED_FIFO
    added_latency_ms: float = 0.0
    notes: list[str] = field(default_factory=list)


class Realtime:
    def __init__(self, config: RealtimeConfig) -> None:
        self.config = config
        self.frame = config.rate * FRAME_MS // 1000
        self.chain = Chain(
            ChainConfig(
                rate=config.rate,
                aec=config.aec,
                gate=config.gate,
                ns=config.ns,
                highpass=config.highpass,
                aec_config=AecConfig(tail_ms=config.tail_ms),
            )
        )
        target = int(config.buffer_frames * self.frame)
        self.period = int(config.rate * config.period_ms / 1000)
        self.capture_period = int(config.rate * config.capture_period_ms / 1000)
        capacity = target + int(config.max_excess_frames * self.frame)
        self.ref_buffer = DriftBuffer(target, capacity=capacity)
        self.out_buffer = DriftBuffer(target, capacity=capacity)
        # The reference ends one playback period before the newest sample played. Two capture
        # periods (20 ms) left fewer holes under load, but the PulseAudio integration test's
        # ERLE fell to 6-10 dB with it (not understood yet): one period is what is verified.
        # A jump beyond 100 ms (stalls measured up to ~35 ms) locks afresh.
        self.aligner = ReferenceAligner(config.rate, margin=self.period, jump=int(0.1 * config.rate))
        # Conversation analytics per call the daemon announces (docs/analytics.md), fed by the chain.
        self.meters = CallMeters()
        self.chain.tap = self.meters.frame
        self.stats = Stats()
        self.stopping = threading.Event()
        self.started_at = 0.0
        self._baseline: tuple[int, int, int] | None = None
        self.pulse: PulseBackend | None = None
        self.portaudio: PortAudioBackend | None = None
        self._control: ControlServer | None = None
        self._rt_threads: set[int] = set()
        # One recorder per call the daemon announces: the agent as the customer heard them (after
        # mute) and the customer; states go back to the daemon through the control channel.
        self.recorders: CallRecorders | None = None
        if config.recording is not None:
            from offhook.recording.calls import CallRecorders

            rec = config.recording
            self.recorders = CallRecorders(rec.directory, rec.recipient, rec.agent, self._recording_reply, config.rate)

    def _recording_reply(self, reply: dict[str, Any]) -> None:
        if self._control is not None:
            self._control.send(reply)

    def record(self, agent: np.ndarray, customer: np.ndarray) -> None:
        """A processed frame to the call recorders (audio thread): a queue put per recording."""
        recorders = self.recorders
        if recorders is None or not len(agent):
            return
        n = len(agent)
        if len(customer) != n:  # the chain hands out whole frames: line the reference up with them
            customer = customer[-n:] if len(customer) > n else np.pad(customer, (n - len(customer), 0))
        recorders.frame(agent, customer)

    def set_muted(self, muted: bool) -> None:
        self.chain.mute.set_muted(muted)
        self.meters.muted = muted

    def clean(self, mic: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """One mic period and its echo reference through the chain (either backend)."""
        out = self.chain.push(mic, ref)
        self.stats.frames += 1
        self.record(out, ref)
        if self._baseline is None and time.monotonic() - self.started_at > 2.0:
            # Start-up backlog and the first late callbacks are not xruns: count from here.
            self._baseline = (self.ref_buffer.underruns + self.out_buffer.underruns,
                              self.ref_buffer.overruns + self.out_buffer.overruns,
                              self._server_xruns())  # fmt: skip
        return out

    def _server_xruns(self) -> int:
        return self.pulse.xruns() if self.pulse is not None else 0

    def realtime_priority(self) -> None:
        """Ask for SCHED_FIFO on the calling callback thread (once per thread).

        Debian's PortAudio does not enable real-time scheduling for ALSA callback threads by
        itself; without it a busy machine stalls the callbacks and the buffers xrun. Best effort:
        needs root, CAP_SYS_NICE or an rtprio limit (the audio group, or rtkit)."""
        ident = threading.get_ident()
        if ident in self._rt_threads:
            return
        self._rt_threads.add(ident)
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(self.config.rt_priority))
            self.stats.realtime_threads += 1
        except (PermissionError, OSError, AttributeError):
            pass

    def start(self) -> None:
        cfg = self.config
        if cfg.backend not in BACKENDS:
            raise ValueError(f"unknown audio backend {cfg.backend!r} (choose from {', '.join(BACKENDS)})")
        if cfg.setup_devices:
            ensure_virtual_devices()
        if cfg.backend == "portaudio":
            self._start_portaudio()
        else:
            try:
                self._start_pulse()
            except PulseError:
                if cfg.backend == "pulse":
                    raise
                self.stats.notes.append("libpulse backend unavailable; using PortAudio")
                self._start_portaudio()
        self._control = ControlServer(
            cfg.control_socket or control_socket_path(), self.set_muted, self.meters, self.recorders
        )

    def _start_pulse(self) -> None:
        self.pulse = PulseBackend(self)
        self.pulse.start()
        self.stats.backend = "pulse"

    def _start_portaudio(self) -> None:
        self.portaudio = PortAudioBackend(self)
        self.portaudio.start()
        self.stats.backend = "portaudio"

    def snapshot(self) -> Stats:
        s = self.stats
        under0, over0, server0 = self._baseline or (0, 0, 0)
        pulse = self.pulse
        if pulse is not None and pulse.streams is not None:
            s.stream_xruns = self._server_xruns() - server0
            s.capture_holes = sum(c.holes for c in pulse.streams.counters)
            s.playback_resyncs = sum(c.resyncs for c in pulse.streams.counters)
        aligner = self.aligner
        s.ref_missing, s.ref_relocks, s.ref_catch_ups = (
            aligner.missing,
            aligner.locks + aligner.relocks,
            aligner.catch_ups,
        )
        s.stretches = self.ref_buffer.stretches + self.out_buffer.stretches
        s.buffer_underruns = self.ref_buffer.underruns + self.out_buffer.underruns - under0
        s.buffer_overruns = self.ref_buffer.overruns + self.out_buffer.overruns - over0
        per = 1000.0 / self.config.rate
        if pulse is not None:  # the server's queue, and mic frames held for their reference
            waiting = pulse.queued + self.frame / 2 + aligner.waiting * self.frame
        else:
            waiting = self.out_buffer.fill
        s.added_latency_ms = (self.chain.latency + waiting + self.frame) * per
        return s

    def stop(self) -> None:
        self.stopping.set()
        if self.portaudio is not None:
            self.portaudio.stop()
        if self.pulse is not None:
            self.pulse.stop()
        if self.recorders is not None:
            self.recorders.close()  # every recording sealed (reported off) before the channel closes
        if self._control is not None:
            self._control.close()


def run_forever(config: RealtimeConfig, seconds: float = 0.0) -> int:
    engine = Realtime(config)
    engine.start()
    started = time.monotonic()
    try:
        while seconds <= 0 or time.monotonic() - started < seconds:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        engine.stop()
    stats = engine.snapshot()
    print(
        f"offhook audio: {stats.frames} frames, stream xruns {stats.stream_xruns}, "
        f"buffer underruns {stats.buffer_underruns}, overruns {stats.buffer_overruns}, "
        f"late mic frames dropped {stats.mic_dropped}, reference catch-ups {stats.ref_catch_ups}, "
        f"added latency ~{stats.added_latency_ms:.0f} ms (estimate from buffer fill), backend {stats.backend}"
    )
    return 0
