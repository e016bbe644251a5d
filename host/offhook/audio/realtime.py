"""Real-time pipeline: headset <-> offhook chain <-> softphone, through PortAudio (pyaudio).

Stream layout (measured on PulseAudio without a sound card, see docs/audio.md): four separate
callback streams, never one full-duplex stream spanning two devices (that busy-loops):

- reference in (``offhook_far`` monitor: what the softphone plays) -> :class:`DriftBuffer`
- headset speaker out <- that buffer; every frame played is also queued as the AEC reference
- headset mic in -> chain (AEC with the queued reference, gate, mute) -> :class:`DriftBuffer`
- virtual mic out (``offhook_mic_sink``, remapped as source ``offhook_mic``) <- that buffer

The two drift buffers sit exactly where the clocks change (system clock of the null sinks vs the
headset's crystal). Added latency = chain latency + one frame + the mic-path buffer's fill +
PulseAudio's buffering of the capture and playback streams.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from offhook.audio import FRAME_MS
from offhook.audio.aec import AecConfig
from offhook.audio.chain import Chain, ChainConfig
from offhook.audio.control import control_socket_path
from offhook.audio.drift import DriftBuffer
from offhook.audio.pulse import RATE, alsa_config, default_pcms, ensure_virtual_devices


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


@dataclass
class Stats:
    frames: int = 0
    stream_xruns: int = 0  # PortAudio status flags (input overflow / output underflow)
    buffer_underruns: int = 0
    buffer_overruns: int = 0
    ref_missing: int = 0  # mic periods whose echo reference was not (all) played yet: zeros
    ref_relocks: int = 0  # times the mic/reference alignment was re-established
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
        self._baseline: tuple[int, int] | None = None
        self._rt_threads: set[int] = set()

    def set_muted(self, muted: bool) -> None:
        self.chain.mute.set_muted(muted)

    # PortAudio callbacks: no allocation-heavy work beyond one frame, never block.
    def _ref_in(self, data: bytes, count: int, info: Any, status: int) -> tuple[None, int]:
        self._note(status)
        self.ref_buffer.push(np.frombuffer(data, dtype="<i2") / 32768.0)
        return None, self._continue()

    def _speaker_out(self, data: Any, count: int, info: Any, status: int) -> tuple[bytes, int]:
        self._note(status)
        frame = self.ref_buffer.pull(count)
        size = len(self._played)
        with self._played_lock:
            start = self._played_total % size
            first = min(count, size - start)
            self._played[start : start + first] = frame[:first]
            self._played[: count - first] = frame[first:]
            self._played_total += count
        return _pcm(frame), self._continue()

    def _mic_in(self, data: bytes, count: int, info: Any, status: int) -> tuple[None, int]:
        self._note(status)
        mic = np.frombuffer(data, dtype="<i2") / 32768.0
        self.out_buffer.push(self.chain.push(mic, self._take_played(count)))
        self.stats.frames += 1
        if self._baseline is None and time.monotonic() - self._started_at > 2.0:
            # Start-up backlog and the first late callbacks are not xruns: count from here.
            self._baseline = (self.ref_buffer.underruns + self.out_buffer.underruns,
                              self.ref_buffer.overruns + self.out_buffer.overruns)  # fmt: skip
        return None, self._continue()

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

    def _virtual_out(self, data: Any, count: int, info: Any, status: int) -> tuple[bytes, int]:
        self._note(status)
        return _pcm(self.out_buffer.pull(count)), self._continue()

    def _realtime_priority(self) -> None:
        """Ask for SCHED_FIFO on the calling PortAudio callback thread (once per thread).

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
        if cfg.setup_devices:
            ensure_virtual_devices()
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
            ("input", "offhook_reference", self._ref_in),
            ("output", "offhook_headset_speaker", self._speaker_out),
            ("input", "offhook_headset_mic", self._mic_in),
            ("output", "offhook_output", self._virtual_out),
        ]
        for direction, name, callback in plan:
            device = {f"{direction}_device_index": index[name], direction: True}
            self._streams.append(
                pa.open(stream_callback=callback, frames_per_buffer=periods[direction], **device, **common)
            )
        self._start_control()

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
        under0, over0 = self._baseline or (0, 0)
        s.stretches = self.ref_buffer.stretches + self.out_buffer.stretches
        s.buffer_underruns = self.ref_buffer.underruns + self.out_buffer.underruns - under0
        s.buffer_overruns = self.ref_buffer.overruns + self.out_buffer.overruns - over0
        per = 1000.0 / self.config.rate
        s.added_latency_ms = (self.chain.latency + self.out_buffer.fill + self.frame) * per
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
        if self._sock is not None:
            self._sock.close()


def _pcm(frame: np.ndarray) -> bytes:
    return np.clip(np.round(frame * 32768.0), -32768, 32767).astype("<i2").tobytes()


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
        f"added latency ~{stats.added_latency_ms:.0f} ms (estimate from buffer fill)"
    )
    return 0
