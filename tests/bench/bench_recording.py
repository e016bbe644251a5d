"""Call recording's cost to the real-time pipeline: recording on beside recording off (issue 26).

The soak of tests/bench/audio/live.py (a private PulseAudio server, the far end playing a talker
into the softphone's speaker sink, the agent talking into the room every other 7 s, the pulse
backend as shipped), run ``RUNS`` times with one call recorded throughout and ``RUNS`` times
without, alternating (off, on, off, on, ...), so the machine's load drifts over both sets alike.
Each figure is the median of its set beside the other set's median, and the goal is the issue's:
the medians differ by less than the spread (max - min) of either set. The real-time factor is
taken twice: the real-time thread's CPU (libpulse's mainloop, which runs the streams, the chain
and the recorder's queue put) per second of audio, and the whole process's, which also counts
the writer thread: that one is expected to differ by the writer's own CPU. The writer's CPU per
call-minute is its thread's CPU time over the recording's length, beside the whole pipeline's
CPU per minute with recording off, from the same run.

``OFFHOOK_BENCH_RECORDING_S`` (default 60) and ``OFFHOOK_BENCH_RECORDING_RUNS`` (default 5) set
the soak length and the runs per set.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path

from offhook.audio.realtime import RecordingConfig
from offhook.recording import meta as M
from offhook.recording import store
from tests.bench.figures import Figure

AREA = "recording"
SECONDS = float(os.environ.get("OFFHOOK_BENCH_RECORDING_S", "60"))
RUNS = int(os.environ.get("OFFHOOK_BENCH_RECORDING_RUNS", "5"))
LAG_PAIRS = 3  # latency pairs per run (each ~7 s): a run's through-lag is the median of three


def _spread(values: list[float]) -> float:
    return max(values) - min(values)


def _compare(name: str, unit: str, on: list[float], off: list[float], digits: int = 3) -> Figure:
    """The issue's goal: |median on - median off| below the spread of either set."""
    diff = abs(statistics.median(on) - statistics.median(off))
    limit = min(_spread(on), _spread(off))
    met = diff < limit or diff == 0.0
    return Figure(
        AREA,
        f"{name}, recording on (median of {len(on)} x {SECONDS:.0f} s)",
        round(statistics.median(on), digits),
        unit,
        f"recording off: median {statistics.median(off):.{digits}f} (runs {min(off):.{digits}f}-{max(off):.{digits}f});"
        f" on: runs {min(on):.{digits}f}-{max(on):.{digits}f}; medians differ by {diff:.{digits}f}",
        f"difference < smaller spread ({limit:.{digits}f})",
        met,
    )


def run() -> list[Figure]:
    import pyrage

    from tests.bench.audio import live

    identity = pyrage.x25519.Identity.generate()
    workdir = Path(tempfile.mkdtemp(prefix="offhook-bench-rec-"))
    key = workdir / "quality.key"
    key.write_text(f"{identity}\n")
    results: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    try:
        for i in range(RUNS):
            for mode in ("off", "on"):
                directory = workdir / f"run{i}"
                recording = RecordingConfig(directory, str(identity.to_public()), "bench") if mode == "on" else None
                result = live.measure(SECONDS, recording=recording, lag_pairs=LAG_PAIRS)
                if recording is not None:
                    (sidecar,) = directory.glob("*" + M.SUFFIX)
                    meta = M.read(sidecar)
                    if meta.status != "complete":
                        raise RuntimeError(f"recording {meta.status}: {meta.reason}")
                    audio = directory / meta.audio
                    store.decrypt(audio, key, directory / "check.ogg")  # it decrypts whole
                    result["recorded_s"] = meta.duration_s
                    result["mb_per_min"] = audio.stat().st_size / 1e6 / (meta.duration_s / 60)
                    result["writer_s_per_min"] = result["writer_cpu_s"] / (meta.duration_s / 60)
                    shutil.rmtree(directory)
                results[mode].append(result)
                brief = {k: round(v, 4) for k, v in result.items() if k in _SHOWN}
                print(f"  run {i + 1} recording {mode}: {brief}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    on, off = results["on"], results["off"]

    def values(rows: list[dict[str, float]], key: str) -> list[float]:
        return [row[key] for row in rows]

    # PulseAudio's own round trip (the room straight to the headset mic) does not pass offhook, so
    # every run's baseline lags are pooled: a duplex stream that opens late under load (up to
    # 400 ms seen) is one sample of 30, not half a run's figure. Each run's added latency is its
    # through-lags' median minus the pooled baseline's.
    baseline = statistics.median([lag for row in on + off for lag in row["baseline_lags_ms"]])  # type: ignore[union-attr]
    for row in on + off:
        row["added_latency_ms"] = statistics.median(row["through_lags_ms"]) - baseline  # type: ignore[arg-type]
    loads = [row[k] for row in on + off for k in ("load_start", "load_end")]
    steal = statistics.median(values(on + off, "steal_share"))
    machine = f"load {min(loads):.1f}-{max(loads):.1f}, steal median {100 * steal:.1f} %"
    writer = values(on, "writer_s_per_min")
    pipeline_per_min = 60 * statistics.median(values(off, "cpu_share"))
    cpu_diff = statistics.median(values(on, "cpu_share")) - statistics.median(values(off, "cpu_share"))
    print(f"  machine during the runs: {machine}")
    return [
        _compare("real-time factor of the real-time thread (CPU per second of audio)", "x",
                 values(on, "audio_thread_cpu_share"), values(off, "audio_thread_cpu_share")),
        _compare("pipeline process CPU per second of audio (the writer thread included)", "x",
                 values(on, "cpu_share"), values(off, "cpu_share")),
        _compare(f"added latency, one clock (48 kHz; PulseAudio alone {baseline:.1f} ms, pooled)", "ms",
                 values(on, "added_latency_ms"),
                 values(off, "added_latency_ms"), 1),
        _compare(f"xruns in {SECONDS:.0f} s", "", values(on, "xruns"), values(off, "xruns"), 0),
        _compare("pipeline's own latency estimate", "ms", values(on, "engine_estimate_ms"),
                 values(off, "engine_estimate_ms"), 1),
        Figure(AREA, "writer thread CPU per call-minute (median)", round(statistics.median(writer), 3), "s",
               f"the whole pipeline, recording off: {pipeline_per_min:.2f} s per minute; on minus off medians: "
               f"{60 * cpu_diff:+.2f} s per minute; writer runs {min(writer):.2f}-{max(writer):.2f}; {machine}"),
        Figure(AREA, "recording size per call-minute (median)",
               round(statistics.median(values(on, "mb_per_min")), 3), "MB",
               "stereo Ogg/Opus 48 kHz in age; docs/recording.md: about 0.9 MB per minute of speech"),
    ]  # fmt: skip


_SHOWN = {
    "cpu_share", "audio_thread_cpu_share", "added_latency_ms", "xruns", "engine_estimate_ms", "writer_cpu_s",
    "writer_s_per_min", "recorded_s", "load_start", "load_end", "steal_share", "soak_wall_s",
}  # fmt: skip
