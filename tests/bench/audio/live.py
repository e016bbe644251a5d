"""The real-time pipeline on a private PulseAudio server: added latency on one clock, and xruns.

Latency is measured the only way that is valid here: one full-duplex PortAudio stream plays a
talker into the "room" (what the headset mic hears) and records the softphone's microphone
(``offhook_mic``) on the same clock; the same stream recording the headset mic directly gives the
baseline round trip of PulseAudio itself. offhook's added latency is the difference of the two
lags (cross-correlation peaks). Each duplex stream's own round trip varies by up to ~25 ms from
one open to the next, so both are measured ``LAG_PAIRS`` times, alternately, and the medians are
compared. Then the pipeline runs with far end and near end playing for ``seconds`` and its xrun
counters are read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import fftconvolve, resample_poly

from offhook.audio.pulse import MIC_SINK, MIC_SOURCE, PulseTestServer, alsa_config, default_pcms
from offhook.audio.realtime import Realtime, RealtimeConfig, RecordingConfig
from tests.bench.audio import scenes

RATE = 48000
FRAME = 480
LAG_PAIRS = 5


def _cpu_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of the whole machine: on a virtual machine the hypervisor's steal
    says whether a bad soak was the pipeline or the host starving every process, the server too."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields)


def _thread_ticks() -> dict[int, tuple[str, int]]:
    """This process's threads: name and CPU jiffies (user + system) each."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = (name, int(fields[11]) + int(fields[12]))
    return out


def _lag(played: np.ndarray, recorded: np.ndarray) -> int | None:
    if len(recorded) < len(played):  # the duplex stream failed (ALSA poll errors under load)
        return None
    corr = fftconvolve(recorded, played[::-1], mode="full")[len(played) - 1 :]
    return int(np.argmax(np.abs(corr[: RATE // 2])))


def _duplex_lag(pa, out_index: int, in_index: int, signal: np.ndarray) -> int | None:
    import pyaudio

    pcm = np.clip(np.round(signal * 32768), -32768, 32767).astype("<i2")
    recorded: list[bytes] = []
    position = [0]

    def callback(data, count, info, status):
        recorded.append(data)
        start = position[0]
        chunk = pcm[start : start + count]
        position[0] += count
        if len(chunk) < count:
            chunk = np.concatenate((chunk, np.zeros(count - len(chunk), dtype="<i2")))
        done = position[0] >= len(pcm) + RATE // 2
        return chunk.tobytes(), pyaudio.paComplete if done else pyaudio.paContinue

    stream = pa.open(format=pyaudio.paInt16, channels=1, rate=RATE, input=True, output=True, frames_per_buffer=FRAME,
                     input_device_index=in_index, output_device_index=out_index, stream_callback=callback)  # fmt: skip
    while stream.is_active():
        time.sleep(0.05)
    stream.close()
    rec = np.frombuffer(b"".join(recorded), dtype="<i2").astype(np.float64) / 32768
    return _lag(signal, rec)


def measure(
    seconds: float,
    backend: str = "pulse",
    queue_ms: float = 20.0,
    recording: RecordingConfig | None = None,
    lag_pairs: int = LAG_PAIRS,
) -> dict[str, float]:
    """One soak; with ``recording`` the soak is one recorded call (tests/bench/bench_recording.py)."""
    server = PulseTestServer(
        sinks=("room", "offhook_far", MIC_SINK),
        sources={"headset_mic": "room.monitor", MIC_SOURCE: f"{MIC_SINK}.monitor"},
    ).start()
    saved = {k: os.environ.get(k) for k in ("PULSE_RUNTIME_PATH", "PULSE_STATE_PATH", "PULSE_SERVER", "PULSE_COOKIE",
                                            "HOME", "ALSA_CONFIG_PATH")}  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="offhook-live-"))
    try:
        for key in saved:
            if key != "ALSA_CONFIG_PATH":
                os.environ[key] = server.env[key]
        pcms = default_pcms("headset_mic", "room") | {
            "bench_room": "room", "bench_softphone_mic": MIC_SOURCE, "bench_headset_mic": "headset_mic"
        }  # fmt: skip
        (workdir / "alsa.conf").write_text(alsa_config(pcms))
        os.environ["ALSA_CONFIG_PATH"] = str(workdir / "alsa.conf")
        engine = Realtime(RealtimeConfig(mic_device="headset_mic", speaker_device="room", setup_devices=False,
                                         control_socket=workdir / "audio.sock", backend=backend,
                                         playback_queue_ms=queue_ms, recording=recording))  # fmt: skip
        engine.start()
        if engine.recorders is not None:
            engine.recorders.event("bench-call", "connect")
        import pyaudio

        pa = pyaudio.PyAudio()
        index = {pa.get_device_info_by_index(i)["name"]: i for i in range(pa.get_device_count())}
        time.sleep(2.0)
        talker = resample_poly(scenes.talker(scenes.NEAR_TEXTS, "en-gb", 3.0, seed=4), 3, 1) * 0.5
        talker += 0.001 * np.random.default_rng(0).standard_normal(len(talker))
        # Soak: far end into the softphone's speaker sink, the agent plus noise into the room.
        n = int(seconds * RATE)
        far = np.resize(resample_poly(scenes.talker(scenes.FAR_TEXTS, "en-us+f3", 20.0, seed=3), 3, 1) * 0.5, n)
        room = np.resize(talker, n) * np.resize(np.repeat([0.0, 1.0], 7 * RATE), n)
        procs = []
        for device, signal, name in (("offhook_far", far, "far.raw"), ("room", room, "room.raw")):
            path = workdir / name
            path.write_bytes(np.clip(np.round(signal * 32768), -32768, 32767).astype("<i2").tobytes())
            procs.append(subprocess.Popen(
                ["pacat", "--playback", f"--device={device}", "--rate=48000", "--channels=1", "--format=s16le",
                 "--raw", "--latency-msec=20", str(path)], env=dict(os.environ),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        before = engine.snapshot()
        xruns0 = before.stream_xruns + before.buffer_underruns + before.buffer_overruns
        started = time.process_time()
        wall = time.monotonic()
        load_start = os.getloadavg()[0]
        steal_start, total_start = _cpu_ticks()
        threads_start = _thread_ticks()
        for proc in procs:
            try:
                # pacat plays slower than real time when the server itself falls behind (load).
                proc.wait(timeout=max(0.0, 1.2 * seconds + 30 - (time.monotonic() - wall)))
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=10)
        wall = time.monotonic() - wall
        cpu = time.process_time() - started
        load_end = os.getloadavg()[0]
        steal_end, total_end = _cpu_ticks()
        threads = {
            tid: (name, ticks - threads_start.get(tid, (name, 0))[1]) for tid, (name, ticks) in _thread_ticks().items()
        }
        # libpulse's threaded mainloop runs every stream's callbacks and the chain: the real-time path.
        audio_ticks = sum(ticks for name, ticks in threads.values() if name == "threaded-ml")
        stats = engine.snapshot()
        # Latency last, with the pipeline settled (drift buffers at their target).
        throughs: list[int] = []
        baselines: list[int] = []
        for _ in range(lag_pairs):
            for device, lags in (("bench_softphone_mic", throughs), ("bench_headset_mic", baselines)):
                lag = _duplex_lag(pa, index["bench_room"], index[device], talker)
                if lag is not None:
                    lags.append(lag)
        if not throughs or not baselines:
            raise RuntimeError("no latency measurement: every duplex stream failed")
        through, baseline = float(np.median(throughs)), float(np.median(baselines))
        print(f"  latency lags (ms): through {[round(x * 1000 / RATE, 1) for x in throughs]}, "
              f"PulseAudio alone {[round(x * 1000 / RATE, 1) for x in baselines]}")  # fmt: skip
        estimate = engine.snapshot().added_latency_ms
        pa.terminate()
        engine.stop()
        return {
            "added_latency_ms": (through - baseline) * 1000 / RATE,
            "baseline_ms": baseline * 1000 / RATE,
            "through_spread_ms": (max(throughs) - min(throughs)) * 1000 / RATE,
            "baseline_spread_ms": (max(baselines) - min(baselines)) * 1000 / RATE,
            "xruns": float(stats.stream_xruns + stats.buffer_underruns + stats.buffer_overruns - xruns0),
            "seconds": seconds,
            "cpu_share": cpu / wall,
            "audio_thread_cpu_share": audio_ticks / os.sysconf("SC_CLK_TCK") / wall,
            "soak_wall_s": wall,
            "load_start": load_start,
            "load_end": load_end,
            "steal_share": (steal_end - steal_start) / max(1, total_end - total_start),
            "engine_estimate_ms": estimate,
            "stretches": float(stats.stretches),
            "stream_xruns": float(stats.stream_xruns),
            "ref_underruns": float(engine.ref_buffer.underruns),
            "out_underruns": float(engine.out_buffer.underruns),
            "overruns": float(stats.buffer_overruns),
            "ref_overruns": float(engine.ref_buffer.overruns),
            "out_overruns": float(engine.out_buffer.overruns),
            "ref_missing": float(stats.ref_missing),
            "ref_relocks": float(stats.ref_relocks),
            "mic_dropped": float(stats.mic_dropped),
            "ref_catch_ups": float(stats.ref_catch_ups),
            # engine.stop() sealed the recording, so its writer's CPU is counted.
            "through_lags_ms": [x * 1000 / RATE for x in throughs],  # type: ignore[dict-item]
            "baseline_lags_ms": [x * 1000 / RATE for x in baselines],  # type: ignore[dict-item]
            "writer_cpu_s": engine.recorders.writer_cpu_s if engine.recorders is not None else 0.0,
        }
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
