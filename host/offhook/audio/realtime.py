"""Real-time pipeline: headset <-> offhook chain <-> softphone.

Two I/O backends drive the same chain and buffers:

- ``pulse`` (the default where a PulseAudio or pipewire-pulse server answers): libpulse's
  asynchronous API through ctypes (:mod:`offhook.audio.libpulse`), all four streams on one
  mainloop thread, explicit buffer sizes, the server's own xrun notifications.
- ``portaudio``: pyaudio through ALSA's ``pulse`` plugin (Debian's PortAudio has no PulseAudio
  host API), four separate callback streams, never one full-duplex stream spanning two devices
  (that busy-loops). Kept for systems without libpulse; it costs latency and xruns under load
  (docs/audio.md).

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
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offhook.audio import BACKENDS, FRAME_MS, pcm
from offhook.audio.aec import AecConfig
from offhook.audio.chain import Chain, ChainConfig
from offhook.audio.control import control_socket_path
from offhook.audio.drift import DriftBuffer, DriftResampler
from offhook.audio.libpulse import Playback, PulseStreams
from offhook.audio.pulse import (
    FAR_SINK,
    MIC_SINK,
    RATE,
    PulseError,
    alsa_config,
    default_pcms,
    ensure_virtual_devices,
)


@dataclass
class RealtimeConfig:
    mic_device: str | None = None
    speaker_device: str | None = None
    aec: bool = True
    gate: bool = True
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
    ref_relocks: int = 0  # times the mic/reference alignment was re-established
    mic_dropped: int = 0  # mic frames not sent because the server already held a frame too many (pulse)
    ref_catch_ups: int = 0  # times mic frames stopped waiting for a reference that fell behind for good (pulse)
    stretches: int = 0  # short buffer reads concealed by reading slower (not silence)
    realtime_threads: int = 0  # callback threads that got SCHED_FIFO
    added_latency_ms: float = 0.0
    notes: list[str] = field(default_factory=list)


class Realtime:
    MAX_WAITING = 5  # mic frames held for their echo reference (pulse backend): 50 ms at most
    CATCH_UP_PERIODS = 100  # reference periods (one second) over which a lasting shortfall is seen

    def __init__(self, config: RealtimeConfig) -> None:
        self.config = config
        self.frame = config.rate * FRAME_MS // 1000
        self.chain = Chain(
            ChainConfig(
                rate=config.rate, aec=config.aec, gate=config.gate, aec_config=AecConfig(tail_ms=config.tail_ms)
            )
        )
        target = int(config.buffer_frames * self.frame)
        self.period = int(config.rate * config.period_ms / 1000)
        self.capture_period = int(config.rate * config.capture_period_ms / 1000)
        capacity = target + int(config.max_excess_frames * self.frame)
        self.ref_buffer = DriftBuffer(target, capacity=capacity)
        self.out_buffer = DriftBuffer(target, capacity=capacity)
        # What the headset played (one second), indexed by sample count: the mic takes its echo
        # reference at a fixed offset in samples, so a late or missing callback on either side
        # costs zeros for that stretch, never a permanent shift the canceller must re-learn.
        self._played = np.zeros(config.rate)
        self._played_total = 0
        self._played_lock = threading.Lock()
        self._mic_total = 0
        self._ref_lag: int | None = None  # mic sample index minus its reference's index
        self._short = 0  # consecutive mic periods whose reference was not all played yet
        # The reference ends one playback period before the newest sample played. Two capture
        # periods (20 ms) left fewer holes under load, but the PulseAudio integration test's
        # ERLE fell to 6-10 dB with it (not understood yet): one period is what is verified.
        self._ref_margin = self.period
        self._relock = int(0.1 * config.rate)  # a lasting jump beyond stalls (max gaps ~35 ms)
        self.stats = Stats()
        self._streams: list[Any] = []
        self._pa: Any = None
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._started_at = 0.0
        self._baseline: tuple[int, int, int] | None = None
        self._pulse: PulseStreams | None = None
        self._speaker: Playback | None = None
        self._mic_out: Playback | None = None
        queue = config.rate * config.playback_queue_ms / 1000
        self._speaker_drift, self._out_drift = DriftResampler(queue), DriftResampler(queue)
        self._mic_queued = 0.0  # samples the server held before the last mic frame was written
        self._waiting: deque[np.ndarray] = deque()  # mic frames waiting for their echo reference
        self._mic_since_reference = 0
        self._least_shortfall: int | None = None  # over the current CATCH_UP_PERIODS
        self._shortfall_periods = 0
        self._rt_threads: set[int] = set()

    def set_muted(self, muted: bool) -> None:
        self.chain.mute.set_muted(muted)

    # The streams' work, one period each, never blocking (either backend).
    def _record_played(self, frame: np.ndarray) -> None:
        """Keep what the headset was given to play: the echo reference for the mic."""
        size, count = len(self._played), len(frame)
        with self._played_lock:
            start = self._played_total % size
            first = min(count, size - start)
            self._played[start : start + first] = frame[:first]
            self._played[: count - first] = frame[first:]
            self._played_total += count

    def _clean(self, mic: np.ndarray) -> np.ndarray:
        out = self.chain.push(mic, self._take_played(len(mic)))
        self.stats.frames += 1
        if self._baseline is None and time.monotonic() - self._started_at > 2.0:
            # Start-up backlog and the first late callbacks are not xruns: count from here.
            self._baseline = (self.ref_buffer.underruns + self.out_buffer.underruns,
                              self.ref_buffer.overruns + self.out_buffer.overruns,
                              self._server_xruns())  # fmt: skip
        return out

    # PortAudio (pull model): callbacks meet at the drift buffers.
    def _on_reference(self, samples: np.ndarray) -> None:
        self.ref_buffer.push(samples)

    def _speaker_samples(self, count: int) -> np.ndarray:
        frame = self.ref_buffer.pull(count)
        self._record_played(frame)
        return frame

    def _on_mic(self, mic: np.ndarray) -> None:
        self.out_buffer.push(self._clean(mic))

    def _output_samples(self, count: int) -> np.ndarray:
        return self.out_buffer.pull(count)

    # libpulse (push model): each captured frame goes straight out, resampled against drift.
    def _pulse_reference(self, samples: np.ndarray) -> None:
        assert self._speaker is not None
        if self.config.rt_priority > 0:
            self._realtime_priority()  # the mainloop thread: every stream's I/O and the chain
        latency = self._speaker.latency()
        frame = self._speaker_drift.process(samples, self._samples(latency))
        self._record_played(frame)
        self._speaker.write(frame, latency)
        self._mic_since_reference = 0
        self._drain_mic()
        self._catch_up_reference()

    def _pulse_mic(self, mic: np.ndarray) -> None:
        self._waiting.append(mic)
        self._mic_since_reference += 1
        self._drain_mic()

    def _drain_mic(self) -> None:
        """Clean and send the mic frames whose echo reference has been played. The reference and
        mic streams deliver their 10 ms periods at nearly the same moment, in either order, and
        after a stall each delivers its whole backlog at once: a mic frame processed first would
        get zeros for its reference, and three in a row re-lock the alignment (the canceller's
        delay jumps and it re-converges: 4-6 dB ERLE for a second, measured). So a mic frame
        waits for its reference, but at most :attr:`MAX_WAITING` frames are held (a reference
        that stays behind is then re-locked instead of delaying the agent's voice for good), and
        none once the reference stream has delivered nothing for that long (gone)."""
        assert self._mic_out is not None
        reference_gone = self._mic_since_reference > self.MAX_WAITING
        while self._waiting and (
            reference_gone or len(self._waiting) > self.MAX_WAITING or self._reference_ready(len(self._waiting[0]))
        ):
            latency = self._mic_out.latency()
            queued = self._samples(latency)
            if queued is not None:
                self._mic_queued = queued
            out = self._out_drift.process(self._clean(self._waiting.popleft()), queued)
            if queued is not None and queued > self._out_drift.steering.target + self.frame:
                # The server holds a whole frame beyond its target (audio that came in a burst):
                # drop this one rather than play the agent's voice that much later until drift
                # steering (at most 2 ms a second) drains it. Bench soaks under hypervisor steal
                # ended with the agent's latency 10-30 ms high; this bounds the queue's share.
                self.stats.mic_dropped += 1
                continue
            self._mic_out.write(out, latency)

    def _catch_up_reference(self) -> None:
        """Stop mic frames waiting for a reference that fell behind for good.

        After a burst of xruns the reference can stay behind the mic for good (far-end audio the
        server dropped: every later reference sample comes that much later against the mic, and
        so does its echo), and the mic frames waiting for it hold the agent's voice back by as
        much (soaks ended 10-30 ms up). Measured after each reference period: how many samples
        the newest waiting frame still lacks. In steady state nothing waits then, whatever order
        the streams deliver in; if something waited at every reference period for a whole second,
        the least of it plus the margin a lock leaves is a lasting shift, and the alignment moves
        by that much. That is at most the true shift (the reference then still comes before its
        echo), so a correction cannot overshoot and cascade: re-locking from scratch, which also
        cleaned the waiting frames against a reference not played yet, did under load."""
        shortfall = 0
        with self._played_lock:
            if self._waiting and self._ref_lag is not None:
                needed = self._mic_total + sum(len(frame) for frame in self._waiting) - self._ref_lag
                shortfall = needed - self._played_total
        least = self._least_shortfall
        self._least_shortfall = shortfall if least is None else min(least, shortfall)
        self._shortfall_periods += 1
        if self._shortfall_periods < self.CATCH_UP_PERIODS:
            return
        lasting, self._least_shortfall, self._shortfall_periods = self._least_shortfall, None, 0
        if lasting > 0:
            with self._played_lock:
                assert self._ref_lag is not None
                self._ref_lag += lasting + self._ref_margin
            self.stats.ref_catch_ups += 1
            self._drain_mic()

    def _reference_ready(self, count: int) -> bool:
        with self._played_lock:
            lag = self._ref_lag
            return lag is None or self._played_total >= self._mic_total + count - lag

    def _samples(self, seconds: float | None) -> float | None:
        return None if seconds is None else seconds * self.config.rate

    def _server_xruns(self) -> int:
        if self._pulse is None:
            return 0
        return sum(c.underflows + c.overflows for c in self._pulse.counters)

    def _take_played(self, count: int) -> np.ndarray:
        """The echo reference for the next ``count`` mic samples: what was played a fixed number
        of samples earlier (ending :attr:`_ref_margin` before the newest sample played when the
        alignment was set). Samples not played yet are zeros."""
        size = len(self._played)
        with self._played_lock:
            played = self._played_total
            wanted = self._mic_total + count - played + self._ref_margin
            if self._ref_lag is None or abs(wanted - self._ref_lag) > self._relock or self._short >= 3:
                # Start-up (the first mic callbacks deliver a backlog), a jump, or playback that
                # fell behind for good (a stalled playback stream loses the time it stalled: the
                # headset really plays everything that much later).
                self._ref_lag = wanted
                self.stats.ref_relocks += 1
            first = self._mic_total - self._ref_lag
            self._mic_total += count
            out = np.zeros(count)
            lo, hi = max(first, played - size, 0), min(first + count, played)
            if hi > lo:  # one or two pieces (around the ring's end)
                start = lo % size
                head = min(hi - lo, size - start)
                out[lo - first : lo - first + head] = self._played[start : start + head]
                out[lo - first + head : hi - first] = self._played[: hi - lo - head]
        if hi < first + count:
            self.stats.ref_missing += 1
            self._short += 1
        else:
            self._short = 0
        return out

    def _portaudio_callback(self, work: Any, direction: str) -> Any:
        """Wrap one stream's work as a PortAudio callback (input: samples in; output: samples out)."""

        def callback(data: Any, count: int, info: Any, status: int) -> tuple[bytes | None, int]:
            self._note(status)
            if direction == "input":
                work(pcm.decode(data))
                return None, self._continue()
            return pcm.encode(work(count)), self._continue()

        return callback

    def _realtime_priority(self) -> None:
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

    def _note(self, status: int) -> None:
        if self.config.rt_priority > 0:
            self._realtime_priority()
        if status and time.monotonic() - self._started_at > 2.0:  # start-up backlog is not an xrun
            self.stats.stream_xruns += 1

    def _continue(self) -> int:
        return 1 if self._stop.is_set() else 0  # paComplete / paContinue

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
        self._start_control()

    def _start_pulse(self) -> None:
        cfg = self.config
        streams = PulseStreams(cfg.rate, app_name="offhook")
        latency = int(self._speaker_drift.steering.target)  # held in the server before each write
        self._speaker = streams.add_playback("offhook headset speaker", cfg.speaker_device, self.frame, latency)
        self._mic_out = streams.add_playback("offhook microphone", MIC_SINK, self.frame, latency)
        streams.add_record("offhook echo reference", f"{FAR_SINK}.monitor", self.frame, self._pulse_reference)
        streams.add_record("offhook headset mic", cfg.mic_device, self.frame, self._pulse_mic)
        self._started_at = time.monotonic()
        streams.start()
        self._pulse = streams
        self.stats.backend = "pulse"

    def _start_portaudio(self) -> None:
        cfg = self.config
        pcms = default_pcms(cfg.mic_device, cfg.speaker_device)
        if "ALSA_CONFIG_PATH" not in os.environ or cfg.setup_devices:
            conf = Path(tempfile.mkstemp(prefix="offhook-alsa-", suffix=".conf")[1])
            conf.write_text(alsa_config(pcms))
            os.environ["ALSA_CONFIG_PATH"] = str(conf)
        import pyaudio

        self._pa = pa = pyaudio.PyAudio()
        index = {pa.get_device_info_by_index(i)["name"]: i for i in range(pa.get_device_count())}
        missing = [name for name in pcms if name not in index]
        if missing:
            raise RuntimeError(f"audio devices not found through ALSA: {', '.join(missing)}")
        common = dict(format=pyaudio.paInt16, channels=1, rate=cfg.rate)
        periods = {"input": self.capture_period, "output": self.period}
        # Callbacks take the GIL in turn; the default 5 ms switch interval would let a busy thread
        # hold a 5 ms callback back by a whole period.
        sys.setswitchinterval(0.001)
        self._started_at = time.monotonic()
        plan = [
            ("input", "offhook_reference", self._on_reference),
            ("output", "offhook_headset_speaker", self._speaker_samples),
            ("input", "offhook_headset_mic", self._on_mic),
            ("output", "offhook_output", self._output_samples),
        ]
        for direction, name, work in plan:
            device = {f"{direction}_device_index": index[name], direction: True}
            callback = self._portaudio_callback(work, direction)
            self._streams.append(
                pa.open(stream_callback=callback, frames_per_buffer=periods[direction], **device, **common)
            )
        self.stats.backend = "portaudio"

    def _start_control(self) -> None:
        path = self.config.control_socket or control_socket_path()
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(0.2)
        self._sock = sock

        def serve() -> None:
            while not self._stop.is_set():
                try:
                    message = sock.recv(64)
                except (TimeoutError, OSError):
                    continue
                if message in (b"mute", b"unmute"):
                    self.set_muted(message == b"mute")

        threading.Thread(target=serve, name="offhook-audio-control", daemon=True).start()

    def snapshot(self) -> Stats:
        s = self.stats
        under0, over0, server0 = self._baseline or (0, 0, 0)
        if self._pulse is not None:
            s.stream_xruns = self._server_xruns() - server0
            s.capture_holes = sum(c.holes for c in self._pulse.counters)
            s.playback_resyncs = sum(c.resyncs for c in self._pulse.counters)
        s.stretches = self.ref_buffer.stretches + self.out_buffer.stretches
        s.buffer_underruns = self.ref_buffer.underruns + self.out_buffer.underruns - under0
        s.buffer_overruns = self.ref_buffer.overruns + self.out_buffer.overruns - over0
        per = 1000.0 / self.config.rate
        if self._pulse is not None:  # the server's queue, and mic frames held for their reference
            waiting = self._mic_queued + self.frame / 2 + len(self._waiting) * self.frame
        else:
            waiting = self.out_buffer.fill
        s.added_latency_ms = (self.chain.latency + waiting + self.frame) * per
        return s

    def stop(self) -> None:
        self._stop.set()
        for stream in self._streams:
            try:
                stream.stop_stream()
                stream.close()
            except OSError:
                pass
        if self._pa is not None:
            self._pa.terminate()
        if self._pulse is not None:
            self._pulse.stop()
            if self._pulse.callback_error is not None:
                self.stats.notes.append(f"audio callback failed: {self._pulse.callback_error!r}")
        if self._sock is not None:
            self._sock.close()


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
