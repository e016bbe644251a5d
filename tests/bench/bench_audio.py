"""Audio core benchmark: offhook's chain against SpeexDSP, WebRTC 0.3 and WebRTC AEC3.

All systems run on the same generated scenarios (tests/bench/audio/scenarios.py: fifteen rooms,
eighteen espeak-ng voices at several speeds, echo 5 dB below to 15 dB above the agent in double
talk, four office noises at several levels, 20-290 ms bulk delay, loudspeaker saturation) and are
measured the same way on what the customer would hear (tests/bench/audio/measures.py). The
scenarios come in three sets that share no room, voice or seed: offhook is tuned on ``tuning``,
judged on ``held-out``, and ``fresh`` checks that decisions which looked at the held-out set
generalise. Figures are means over a set's scenarios (medians for times).

The anchors' measures do not change between runs (same samples, same libraries); they are cached
under .make/audio-cache/bench (delete it after changing an anchor). ``OFFHOOK_BENCH_SYSTEMS`` picks
systems, ``OFFHOOK_BENCH_SETS`` sets (``tuning`` while tuning), ``OFFHOOK_BENCH_LIVE=0`` skips the
real-time pipeline. ``OFFHOOK_BENCH_PARTS`` picks parts of the run: ``scenes`` (the recording with
single talk, double talk, near end only and noise only), ``change`` (the path-change recording),
``speed`` (real-time factors); all three by default. Quick path-change check of offhook alone:
``OFFHOOK_BENCH_SYSTEMS=offhook OFFHOOK_BENCH_SETS=tuning OFFHOOK_BENCH_PARTS=change
OFFHOOK_BENCH_LIVE=0 python -m tests.bench audio``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np

from offhook.audio.aec import AecConfig
from offhook.audio.chain import ChainConfig, process_signals
from tests.bench.audio import anchors, measures, scenarios, scenes
from tests.bench.figures import Figure

AREA = "audio"
RATE = scenes.RATE
SETS = ("tuning", "held-out", "fresh")
# CPU time is taken as the best of three passes per scenario, for every system alike: on this
# shared machine one pass varies by +-25 % with the neighbours' load, and the fastest pass is the
# one least disturbed by it. Timed on the first TIMED_SCENARIOS tuning scenarios (both recordings).
TIMING_PASSES = 3
TIMED_SCENARIOS = 5
RTF_GOAL = 0.03  # 16 kHz, one core
RATIO_GOAL = 3.0  # offhook's time over the C anchors' mean
MEASURES_VERSION = 1  # bump when a measure changes: cached anchor results are keyed by it
CACHE = scenes.CACHE / "bench"
PARTS = ("scenes", "change", "speed")

Factory = Callable[[scenes.Scene], anchors.Processor]  # a system, set up for one scenario


def _offhook(**chain: bool) -> Factory:
    def factory(scene: scenes.Scene) -> anchors.Processor:
        config = ChainConfig(aec_config=AecConfig(tail_ms=scene.tail_ms), **chain)
        return lambda mic, ref: process_signals(mic, ref, config)

    return factory


def _systems() -> dict[str, Factory]:
    return {
        "offhook": _offhook(ns=True),
        "offhook (no NS)": _offhook(ns=False),
        # The linear canceller's output alone: what the suppression after it starts from.
        "offhook (linear only)": _offhook(suppress=False, ns=False, gate=False),
        "SpeexDSP": lambda s: anchors.speex(s.bulk_delay_ms + s.tail_ms, False),
        "SpeexDSP+preprocess": lambda s: anchors.speex(s.bulk_delay_ms + s.tail_ms, True),
        "WebRTC 0.3": lambda s: anchors.webrtc03(),
        "WebRTC AEC3": lambda s: anchors.aec3(),
    }


def _measure_one(factory: Factory, spec: scenarios.Spec, parts: tuple[str, ...] = PARTS) -> dict[str, float]:
    """Every measure of one scenario (both recordings, or those ``parts`` names) for one system."""
    results: dict[str, float] = {}
    if "scenes" in parts:
        results.update(_measure_scenes(factory, spec))
    if "change" in parts:
        results.update(_measure_change(factory, spec))
    return results


def _measure_scenes(factory: Factory, spec: scenarios.Spec) -> dict[str, float]:
    results: dict[str, float] = {}
    sc = scenarios.build(spec)
    out = measures.align(factory(sc)(sc.mic, sc.ref), sc.mic)
    a, b = sc.segments["fst"]
    steady = slice(b - 3 * RATE, b)
    results["erle"] = measures.db_ratio(sc.mic[steady], out[steady])
    results["limit"] = measures.db_ratio(sc.mic[steady], sc.noise[steady])
    results["t10"] = measures.time_to_erle(sc.mic, out, sc.echo, sc.noise, a, b)
    a, b = sc.segments["dt"]
    results["dt_pesq"] = measures.pesq_wb(sc.near[a:b], out[a:b])
    results["dt_stoi"] = measures.stoi(sc.near[a:b], out[a:b])
    # What a canceller that left no echo and touched nothing else would score.
    results["dt_stoi_no_echo"] = measures.stoi(sc.near[a:b], sc.mic[a:b] - sc.echo[a:b])
    a, b = sc.segments["near"]
    results["near_pesq"] = measures.pesq_wb(sc.near[a:b], out[a:b])
    results["near_stoi"] = measures.stoi(sc.near[a:b], out[a:b])
    results["mic_pesq"] = measures.pesq_wb(sc.near[a:b], sc.mic[a:b])
    results["mic_stoi"] = measures.stoi(sc.near[a:b], sc.mic[a:b])
    results["onset"] = measures.onset_clipping_ms(sc.mic, out, sc.near, a, b)
    a, b = sc.segments["noise"]
    quiet = slice(a + RATE // 2, b)
    results["noise_att"] = measures.db_ratio(sc.mic[quiet], out[quiet])
    results["kurtosis"] = measures.kurtosis_ratio(sc.mic[quiet], out[quiet])
    return results


def _measure_change(factory: Factory, spec: scenarios.Spec) -> dict[str, float]:
    results: dict[str, float] = {}
    ch = scenarios.build_change(spec)
    out = measures.align(factory(ch)(ch.mic, ch.ref), ch.mic)
    a, b = ch.segments["after"]
    steady = slice(b - 3 * RATE, b)
    results["erle_change"] = measures.db_ratio(ch.mic[steady], out[steady])
    results["limit_change"] = measures.db_ratio(ch.mic[steady], ch.noise[steady])
    results["t10_change"] = measures.time_to_erle(ch.mic, out, ch.echo, ch.noise, a, b)
    return results


def _measure(
    name: str, factory: Factory, specs: list[scenarios.Spec], parts: tuple[str, ...] = PARTS
) -> list[dict[str, float]]:
    rows = []
    for spec in specs:
        path = None
        if not name.startswith("offhook"):
            key = hashlib.sha256(json.dumps([MEASURES_VERSION, scenarios.VERSION, name, asdict(spec)]).encode())
            path = CACHE / f"{key.hexdigest()[:20]}.json"
            if path.exists():
                rows.append(json.loads(path.read_text()))
                continue
        row = _measure_one(factory, spec, parts)
        if path is not None and all(part in parts for part in ("scenes", "change")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(row))
        rows.append(row)
    return rows


def _real_time_factors(systems: dict[str, Factory]) -> dict[str, float]:
    """CPU time over audio time per system: per recording the best of TIMING_PASSES passes, the
    passes interleaved across systems so that a slow spell of the shared machine hits all alike."""
    specs = scenarios.specs("tuning")[:TIMED_SCENARIOS]
    recordings = [sc for spec in specs for sc in (scenarios.build(spec), scenarios.build_change(spec))]
    audio = sum(len(sc.mic) for sc in recordings) / RATE
    best: dict[tuple[str, int], float] = {}
    for _ in range(TIMING_PASSES):
        for name, factory in systems.items():
            for index, sc in enumerate(recordings):
                process = factory(sc)
                started = time.process_time()
                process(sc.mic, sc.ref)
                elapsed = time.process_time() - started
                best[name, index] = min(best.get((name, index), math.inf), elapsed)
    return {name: sum(best[name, i] for i in range(len(recordings))) / audio for name in systems}


def _rtf_48k(spec: scenarios.Spec) -> tuple[float, float]:
    from scipy.signal import resample_poly

    scene = scenarios.build(spec)
    mic, ref = resample_poly(scene.mic, 3, 1), resample_poly(scene.ref, 3, 1)
    config = ChainConfig(rate=48000, aec_config=AecConfig(tail_ms=scene.tail_ms), gate=False, ns=True)
    busy = math.inf
    for _ in range(TIMING_PASSES):
        started = time.process_time()
        out = process_signals(mic, ref, config)
        busy = min(busy, time.process_time() - started)
    _a, b = scene.segments["fst"]
    steady = slice(3 * (b - 3 * RATE), 3 * b)
    return busy / (len(mic) / 48000), measures.db_ratio(mic[steady], out[steady])


def run() -> list[Figure]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    only = os.environ.get("OFFHOOK_BENCH_SYSTEMS")  # e.g. "offhook,SpeexDSP" while tuning
    sets = os.environ.get("OFFHOOK_BENCH_SETS", ",".join(SETS)).split(",")
    systems = {k: v for k, v in _systems().items() if not only or k in only.split(",")}
    parts = tuple(os.environ.get("OFFHOOK_BENCH_PARTS", ",".join(PARTS)).split(","))
    figures: list[Figure] = []
    for split in sets:
        specs = scenarios.specs(split)
        measured: dict[str, list[dict[str, float]]] = {}
        for name, factory in systems.items():
            try:
                measured[name] = _measure(name, factory, specs, parts)
            except Exception as exc:  # an anchor that cannot run is reported, not fatal
                print(f"  {name}: not measured ({exc})")
        _print_table(split, specs, measured)
        figures += _figures(split, specs, measured)
    if "speed" in parts:
        timed = {k: v for k, v in systems.items() if k in ("offhook",) or not k.startswith("offhook")}
        rtfs = _real_time_factors(timed)
        print("  real-time factors: " + ", ".join(f"{k} {v:.4f}" for k, v in rtfs.items()))
        figures += _speed(rtfs)
    if os.environ.get("OFFHOOK_BENCH_LIVE", "1") != "0":
        figures.extend(_live())
    return figures


# Rows of the scenario table: (key, label, aggregate, higher is better, scenarios it applies to).
ROWS: list[tuple[str, str, str, bool, str]] = [
    ("erle", "ERLE far-end single talk, steady (dB)", "mean", True, "all"),
    ("erle", "ERLE single talk, strong non-linearity (dB)", "mean", True, "nonlinear"),
    ("erle_change", "ERLE after echo-path change (dB)", "mean", True, "all"),
    ("t10", "time to 10 dB ERLE, median (s)", "median", False, "all"),
    ("t10_change", "time to 10 dB after path change, median (s)", "median", False, "all"),
    ("dt_pesq", "double talk near-end PESQ-WB", "mean", True, "all"),
    ("dt_stoi", "double talk near-end STOI", "mean", True, "all"),
    ("near_pesq", "near-end only PESQ-WB", "mean", True, "all"),
    ("near_stoi", "near-end only STOI", "mean", True, "all"),
    ("noise_att", "noise attenuation, noise only (dB)", "mean", True, "all"),
    ("kurtosis", "kurtosis ratio, residual/input noise (musical noise)", "mean", False, "all"),
    ("onset", "onset clipping, near-end only (ms)", "mean", False, "all"),
]


def _value(rows: list[dict[str, float]], specs: list[scenarios.Spec], key: str, agg: str, which: str) -> float:
    values = [
        row[key] for row, spec in zip(rows, specs, strict=True) if key in row and (which == "all" or spec.nonlinear)
    ]
    if not values:
        return math.nan
    return float(np.median(values)) if agg == "median" else float(np.mean(values))


def _print_table(split: str, specs: list[scenarios.Spec], measured: dict[str, list[dict[str, float]]]) -> None:
    names = list(measured)
    print(f"\n  {split} set: {len(specs)} scenarios ({', '.join(sorted({s.room for s in specs}))})")
    print("  " + f"{'figure':<58}" + "".join(f"{n[:19]:>20}" for n in names))
    first = next(iter(measured.values()), None)
    for key, label, agg, _higher, which in ROWS:
        cells = "".join(f"{_value(measured[n], specs, key, agg, which):>20.3f}" for n in names)
        print(f"  {label:<58}{cells}")
    extra = (
        ("limit", "noise-floor limit, single talk (dB)"),
        ("limit_change", "noise-floor limit, path change (dB)"),
        ("mic_pesq", "unprocessed mic PESQ-WB, near only"),
        ("mic_stoi", "unprocessed mic STOI, near only"),
        ("dt_stoi_no_echo", "STOI in double talk with the echo removed perfectly"),
    )
    for key, label in extra if first else ():
        print(f"  {label:<58}{_value(first, specs, key, 'mean', 'all'):>20.3f}")


def _figures(split: str, specs: list[scenarios.Spec], measured: dict[str, list[dict[str, float]]]) -> list[Figure]:
    """Every system's figures for one set; goals are judged for offhook on the held-out set only."""
    judged = split == "held-out"
    anchors_only = {k: v for k, v in measured.items() if not k.startswith("offhook")}
    first = next(iter(measured.values()), None)
    if first is None:
        return []
    pairs = (("erle", "limit", "all"), ("erle_nl", "limit", "nonlinear"), ("erle_change", "limit_change", "all"))
    limit = {key: _value(first, specs, lim, "mean", which) for key, lim, which in pairs}
    speexpp = measured.get("SpeexDSP+preprocess")
    figures = []
    for key, label, agg, higher, which in ROWS:
        values = {k: _value(v, specs, key, agg, which) for k, v in anchors_only.items()}
        finite = {k: v for k, v in values.items() if math.isfinite(v)}
        best_name = (max if higher else min)(finite, key=lambda k: finite[k]) if finite else ""
        best = finite.get(best_name, math.nan)
        for system, rows in measured.items():
            value = _value(rows, specs, key, agg, which)
            reference, goal, met = "", "", None
            if system == "offhook":
                reference = f"best anchor {best_name}: {best:.3g}"
                lim_key = "erle_nl" if which == "nonlinear" else key
                goal, met = _goal(key, value, best, limit.get(lim_key, math.nan), speexpp, specs, which)
                if not judged:
                    goal, met = (f"({goal}: judged on held-out)" if goal else ""), None
            figures.append(Figure(AREA, f"{split}: {system}: {label}", value, "", reference, goal, met))
    return figures


def _goal(key: str, value: float, best: float, limit: float, speexpp: list | None, specs: list, which: str
          ) -> tuple[str, bool | None]:  # fmt: skip
    if key in ("erle", "erle_change"):
        target = min(best, limit)
        return f">= min(best anchor, noise-floor limit {limit:.1f}) = {target:.1f}", value >= target
    if key in ("t10", "t10_change"):
        return "<= 1 s", value <= 1.0
    if key in ("dt_pesq", "near_pesq", "noise_att") and speexpp is not None:
        target = _value(speexpp, specs, key, "mean", which)
        return f">= SpeexDSP+preprocess ({target:.2f})", value >= target
    if key == "kurtosis" and speexpp is not None:
        target = _value(speexpp, specs, key, "mean", which)
        return f"<= SpeexDSP+preprocess ({target:.2f})", value <= target
    if key == "dt_stoi":
        return ">= 0.97", value >= 0.97
    if key == "near_stoi":
        return ">= 0.99", value >= 0.99
    return "", None


def _speed(rtfs: dict[str, float]) -> list[Figure]:
    """offhook's CPU time over the C anchors' mean, timed in the same interleaved passes: this
    machine's speed swings by half from minute to minute, which moves absolute factors far more
    than the ratio."""
    figures = [Figure(AREA, f"{name}: real-time factor, 16 kHz, one core", rtf, "x") for name, rtf in rtfs.items()]
    c_anchors = [v for k, v in rtfs.items() if not k.startswith("offhook")]
    if "offhook" in rtfs and c_anchors:
        mean = float(np.mean(c_anchors))
        ratio = rtfs["offhook"] / mean
        figures.append(Figure(AREA, "offhook: real-time factor over the C anchors' mean (same run)", ratio, "x",
                              f"C anchors' mean {mean:.4f}", f"<= {RATIO_GOAL:.0f}x", ratio <= RATIO_GOAL))  # fmt: skip
    rtf48, erle48 = _rtf_48k(scenarios.specs("tuning")[1])
    figures.append(Figure(AREA, "offhook 48 kHz path (gate off): real-time factor", rtf48, "x"))
    figures.append(Figure(AREA, "offhook 48 kHz path (gate off): ERLE, a tuning desk speakerphone (dB)", erle48, "dB"))
    return figures


# The pipeline as shipped (libpulse, 20 ms held in the server before each write), the same with
# 10 ms (lower latency, but this machine's scheduling stalls outlast it), and PortAudio as the
# reference (its own buffering; the queue setting does not apply).
LIVE_RUNS = (("pulse", 20.0), ("pulse", 10.0), ("portaudio", 20.0))


def _live() -> list[Figure]:
    """Real-time pipeline on a private PulseAudio server (see tests/bench/audio/live.py)."""
    from tests.bench.audio import live

    seconds = float(os.environ.get("OFFHOOK_BENCH_SOAK_S", "60"))
    figures = []
    for backend, queue_ms in LIVE_RUNS:
        label = f"{backend}, {queue_ms:.0f} ms queue" if backend == "pulse" else "PortAudio via ALSA pulse"
        try:
            result = live.measure(seconds, backend=backend, queue_ms=queue_ms)
        except Exception as exc:
            print(f"  real-time pipeline ({label}): not measured ({exc})")
            continue
        print(f"  real-time ({label}): {result}")
        shipped = (backend, queue_ms) == LIVE_RUNS[0]
        figures += [
            Figure(AREA, f"real-time ({label}): added latency, one clock (48 kHz)", result["added_latency_ms"], "ms",
                   f"PulseAudio round trip alone {result['baseline_ms']:.0f} ms", "<= 40 ms" if shipped else "",
                   result["added_latency_ms"] <= 40.0 if shipped else None),
            Figure(AREA, f"real-time ({label}): xruns in {seconds:.0f} s (goal is stated for 600 s)", result["xruns"],
                   "", "OFFHOOK_BENCH_SOAK_S=600 for the full soak", "0" if shipped else "",
                   result["xruns"] == 0 if shipped else None),
            Figure(AREA, f"real-time ({label}): process CPU share during the soak (one core = 1)",
                   result["cpu_share"], "x",
                   f"hypervisor steal {100 * result['steal_share']:.0f} % of machine time, soak's audio took "
                   f"{result['soak_wall_s']:.0f} s of wall time"),
        ]  # fmt: skip
    return figures
