"""The real-time pipeline's echo reference stays aligned by sample count when callbacks jitter or
go missing (no PortAudio needed: the callbacks are driven directly)."""

from __future__ import annotations

import numpy as np
import pytest

from offhook.audio.realtime import Realtime, RealtimeConfig


def test_reference_keeps_a_fixed_offset_through_jitter_and_a_missed_playback_period():
    engine = Realtime(RealtimeConfig(setup_devices=False, aec=False, gate=False))
    period, capture = engine.period, engine.capture_period
    played = np.arange(1, 48000 * 4, dtype=np.float64)  # sample n has value n + 1: 0 means missing
    engine.ref_buffer.pull = lambda n: next(chunks)  # type: ignore[method-assign]
    chunks = iter(played[i : i + period] for i in range(0, len(played), period))
    # Two playback periods per capture period on average: jittered (1 and 3), one stall (0 then 4).
    plays = [2] * 100 + [1, 3] * 50 + [2] * 50 + [0, 4] + [2] * 48
    refs = []
    for count in plays:
        for _ in range(count):
            engine._speaker_samples(period)
        refs.append(engine._take_played(capture))
    ref = np.concatenate(refs)
    known = ref > 0
    # Every reference sample present is the played sample a constant number of samples back.
    offsets = np.arange(len(ref))[known] - (ref[known] - 1)
    assert engine.stats.ref_relocks == 1
    assert np.all(offsets == offsets[0])
    assert known.mean() > 0.95


class _FakePlayback:
    """The libpulse playback seam: what was written, and a server queue steady at its target."""

    def __init__(self, seconds: float = RealtimeConfig.playback_queue_ms / 1000) -> None:
        self.written: list[np.ndarray] = []
        self.seconds = seconds

    def latency(self) -> float:
        return self.seconds

    def write(self, samples: np.ndarray, latency: float | None) -> None:
        self.written.append(samples)


def _pulse_engine() -> Realtime:
    """The pulse backend's stream work, driven directly, with fake playback streams."""
    engine = Realtime(RealtimeConfig(setup_devices=False, aec=False, gate=False))
    engine._speaker, engine._mic_out = _FakePlayback(), _FakePlayback()  # type: ignore[assignment]
    return engine


def _in_step(engine: Realtime, periods: int) -> None:
    """Both streams deliver ``periods`` periods of ones, the reference first each time."""
    ones = np.ones(engine.frame)
    for _ in range(periods):
        engine._pulse_reference(ones)
        engine._pulse_mic(ones)


def test_pulse_mic_frames_wait_for_their_reference_whatever_order_the_streams_deliver_in():
    """The reference and mic periods arrive at nearly the same moment in either order; a mic frame
    must never be cleaned against a reference that has not been played yet (zeros), which after
    three in a row would re-lock the alignment and make the canceller re-converge."""
    engine = _pulse_engine()
    frame = engine.frame
    refs: list[np.ndarray] = []
    engine.chain.push = lambda mic, ref: (refs.append(ref), mic)[1]  # type: ignore[method-assign]
    far = np.arange(1, 48000 * 4, dtype=np.float64) / 1e6  # sample n is (n + 1) / 1e6: 0 means missing
    rng = np.random.default_rng(3)
    fed = 0
    order = ["ref", "mic"] * 20 + ["mic", "ref"] * 20  # the streams swap order halfway through
    order += [step for _ in range(60) for step in rng.permutation(["ref", "mic"])]
    order += ["mic", "mic", "ref", "ref"] + ["ref", "mic"] * 20  # a reference period late by one
    order += ["mic"] * 4 + ["ref"] * 4 + ["ref", "mic"] * 20  # a 40 ms stall: each backlog comes at once
    for step in order:
        if step == "ref":
            engine._pulse_reference(far[fed : fed + frame])
            fed += frame
        else:
            engine._pulse_mic(np.zeros(frame))
    ref = np.concatenate(refs)
    # The drift resampler holds back one sample: played sample k is far[k + 1] shifted by one.
    known = ref > 0
    offsets = np.arange(len(ref))[known] - np.round(ref[known] * 1e6)
    assert engine.stats.ref_missing == 0
    assert engine.stats.ref_relocks == 1
    assert engine.stats.ref_catch_ups == 0  # jitter and a stall are not a lasting shift
    assert np.all(offsets == offsets[0])
    assert len(refs) == order.count("mic")  # every mic frame went out


def test_pulse_mic_frames_stop_waiting_when_the_reference_stream_is_gone():
    engine = _pulse_engine()
    frame = engine.frame
    _in_step(engine, 20)
    written = len(engine._mic_out.written)  # type: ignore[attr-defined]
    for _ in range(50):  # the reference stream stops delivering
        engine._pulse_mic(np.ones(frame))
    sent = len(engine._mic_out.written) - written  # type: ignore[attr-defined]
    assert sent >= 50 - Realtime.MAX_WAITING  # held at most MAX_WAITING periods, then straight through
    assert len(engine._waiting) == 0


def test_pulse_mic_frames_are_dropped_while_the_server_holds_a_frame_too_many():
    """A queue inflated beyond its target (audio that arrived in a burst) would delay the agent's
    voice until drift steering drains it at 2 ms a second; whole frames are dropped instead."""
    engine = _pulse_engine()
    queue = RealtimeConfig.playback_queue_ms / 1000
    frame = engine.frame
    reported = [queue] * 10 + [queue + 0.035, queue + 0.025, queue + 0.015] + [queue + 0.004] * 10
    for seconds in reported:
        engine._mic_out.seconds = seconds  # type: ignore[attr-defined]
        engine._pulse_reference(np.ones(frame))
        engine._pulse_mic(np.ones(frame))
    assert engine.stats.mic_dropped == 3  # only the frames that found more than target + a frame
    assert len(engine._mic_out.written) == len(reported) - 3  # type: ignore[attr-defined]


@pytest.mark.parametrize("reference_first", [True, False])
def test_pulse_mic_frames_stop_waiting_for_a_reference_that_fell_behind_for_good(reference_first: bool):
    """Far-end audio the server dropped (two periods here) puts every later reference period two
    periods behind the mic, and its echo as late: the mic frames waiting for it would hold the
    agent's voice back up to 20 ms for good. Within two seconds the alignment moves, once, by at
    most the true shift, so the reference still comes before its echo (here a frame short: what
    is measurable whatever the streams' order; the canceller's delay estimate takes up the rest)."""
    engine = _pulse_engine()
    frame = engine.frame
    refs: list[np.ndarray] = []
    engine.chain.push = lambda mic, ref: (refs.append(ref), mic)[1]  # type: ignore[method-assign]
    far = np.arange(1, 48000 * 6, dtype=np.float64) / 1e6  # sample n is (n + 1) / 1e6: 0 means missing
    fed = 0
    waiting_after_step: list[int] = []

    def reference() -> None:
        nonlocal fed
        engine._pulse_reference(far[fed : fed + frame])
        fed += frame

    steps = ["both"] * 100 + ["mic", "mic"] + ["both"] * 300
    for step in steps:
        if step == "both" and reference_first:
            reference()
        engine._pulse_mic(np.zeros(frame))
        if step == "both" and not reference_first:
            reference()
        waiting_after_step.append(len(engine._waiting))
    ref = np.concatenate(refs)
    known = ref > 0
    offsets = np.arange(len(ref))[known] - np.round(ref[known] * 1e6)
    assert engine.stats.ref_catch_ups == 1
    assert engine.stats.ref_relocks == 1 and engine.stats.ref_missing == 0
    assert set(offsets[: 100 * frame]) == {offsets[0]}
    # (the drift resampler slips a sample now and then: the typical offset is what moved)
    moved = np.median(offsets[-100 * frame :]) - offsets[0]
    assert frame <= moved <= 2 * frame  # the reference never comes after its echo
    # Frames held after each step: two (reference first) or one before the catch-up; afterwards
    # one at most, the wait for the next reference period that the streams' order alone gives.
    assert set(waiting_after_step[110:190]) == ({2} if reference_first else {1})
    assert set(waiting_after_step[-100:]) == ({1} if reference_first else {0})
    assert len(refs) + len(engine._waiting) == len(steps)  # no mic frame lost on the way
