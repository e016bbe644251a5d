"""The ``portaudio`` backend of `offhook audio run`: pyaudio through ALSA's ``pulse`` plugin.

Debian's PortAudio has no PulseAudio host API. Four separate callback streams (pull model), never
one full-duplex stream spanning two devices (that busy-loops), meeting at drift-compensating
buffers wherever the clock changes. Kept for systems without libpulse; it costs latency and xruns
under load (docs/audio.md).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from offhook.audio import pcm
from offhook.audio.pulse import alsa_config, default_pcms

if TYPE_CHECKING:
    from offhook.audio.realtime import Realtime


class PortAudioBackend:
    def __init__(self, engine: Realtime) -> None:
        self.engine = engine
        self._pa: Any = None
        self._streams: list[Any] = []

    def start(self) -> None:
        engine, cfg = self.engine, self.engine.config
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
        periods = {"input": engine.capture_period, "output": engine.period}
        # Callbacks take the GIL in turn; the default 5 ms switch interval would let a busy thread
        # hold a 5 ms callback back by a whole period.
        sys.setswitchinterval(0.001)
        engine.started_at = time.monotonic()
        plan = [
            ("input", "offhook_reference", self.on_reference),
            ("output", "offhook_headset_speaker", self.speaker_samples),
            ("input", "offhook_headset_mic", self.on_mic),
            ("output", "offhook_output", self.output_samples),
        ]
        for direction, name, work in plan:
            device = {f"{direction}_device_index": index[name], direction: True}
            callback = self._callback(work, direction)
            self._streams.append(
                pa.open(stream_callback=callback, frames_per_buffer=periods[direction], **device, **common)
            )

    # The streams' work, one period each, never blocking: callbacks meet at the drift buffers.
    def on_reference(self, samples: np.ndarray) -> None:
        self.engine.ref_buffer.push(samples)

    def speaker_samples(self, count: int) -> np.ndarray:
        frame = self.engine.ref_buffer.pull(count)
        self.engine.aligner.played(frame)
        return frame

    def on_mic(self, mic: np.ndarray) -> None:
        self.engine.out_buffer.push(self.engine.clean(mic, self.engine.aligner.take(len(mic))))

    def output_samples(self, count: int) -> np.ndarray:
        return self.engine.out_buffer.pull(count)

    def _callback(self, work: Any, direction: str) -> Any:
        """Wrap one stream's work as a PortAudio callback (input: samples in; output: samples out)."""
        engine = self.engine

        def callback(data: Any, count: int, info: Any, status: int) -> tuple[bytes | None, int]:
            if engine.config.rt_priority > 0:
                engine.realtime_priority()
            if status and time.monotonic() - engine.started_at > 2.0:  # start-up backlog is not an xrun
                engine.stats.stream_xruns += 1
            done = 1 if engine.stopping.is_set() else 0  # paComplete / paContinue
            if direction == "input":
                work(pcm.decode(data))
                return None, done
            return pcm.encode(work(count)), done

        return callback

    def stop(self) -> None:
        for stream in self._streams:
            try:
                stream.stop_stream()
                stream.close()
            except OSError:
                pass
        if self._pa is not None:
            self._pa.terminate()
