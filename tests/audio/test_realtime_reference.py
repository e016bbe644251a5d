"""The echo reference stays aligned by sample count when callbacks jitter, stall or go missing:
the reference aligner without I/O, and the pulse backend's stream work with fake streams."""

from __future__ import annotations

import numpy as np
import pytest

from offhook.audio.align import ReferenceAligner
from offhook.audio.realtime import Realtime, RealtimeConfig
from offhook.audio.realtime_pulse import PulseBackend

RATE = 48000
PERIOD, CAPTURE = 240, 480  # playback 5 ms, capture 10 ms


def _aligner() -> ReferenceAligner:
    return ReferenceAligner(RATE, margin=PERIOD, jump=RATE // 10)


def _numbered(seconds: float) -> np.ndarray:
    return np.arange(1, int(RATE * seconds), dtype=np.float64) / 1e6  # sample n is (n + 1) / 1e6: 0 is missing


def _offsets(refs: list[np.ndarray]) -> np.ndarray:
    """Per reference sample present: mic sample index minus the played sample's index."""
    ref = np.concatenate(refs)
    known = ref > 0
    return np.arange(len(ref))[known] - (np.round(ref[known] * 1e6) - 1)


def _pull_model(plays: list[int]) -> tuple[ReferenceAligner, list]:
    """PortAudio's way: ``plays[k]`` playback periods, then one mic period."""
    aligner, far, fed, refs = _aligner(), _numbered(8), 0, []
    for count in plays:
        for _ in range(count):
            aligner.played(far[fed : fed + PERIOD])
            fed += PERIOD
        refs.append(aligner.take(CAPTURE))
    return aligner, refs


def test_reference_keeps_a_fixed_offset_through_jitter_and_a_missed_playback_period():
    # Two playback periods per capture period on average: jittered (1 and 3), one stall (0 then 4).
    aligner, refs = _pull_model([2] * 100 + [1, 3] * 50 + [2] * 50 + [0, 4] + [2] * 48)
    offsets = _offsets(refs)
    assert aligner.locks == 1 and aligner.relocks == 0
    assert np.all(offsets == offsets[0])
    assert np.mean(np.concatenate(refs) > 0) > 0.95


def test_stalls_made_up_by_a_burst_never_move_the_alignment():
    """Playback delivering nothing for three and five mic periods, then the backlog at once: the
    shortfall grows while nothing is played, and re-locking then (as a fresh lock did) would put
    the reference after a burst too early, then too late: a cascade."""
    plays = [2] * 100 + [0, 0, 0, 8] + [2] * 100 + [0] * 5 + [12] + [2] * 100
    aligner, refs = _pull_model(plays)
    offsets = _offsets(refs)
    assert aligner.locks == 1 and aligner.relocks == 0
    assert np.all(offsets == offsets[0])


@pytest.mark.parametrize("stall", [[0, 1], [0, 0, 1]])
def test_playback_that_fell_behind_for_good_moves_the_alignment_once_by_the_true_shift(stall):
    """A stalled playback stream that resumes without making up the time: the headset plays
    everything that much later for good (3 or 5 periods here)."""
    aligner, refs = _pull_model([2] * 100 + stall + [2] * 300)
    lost = (2 * len(stall) - sum(stall)) * PERIOD
    offsets = _offsets(refs)
    assert aligner.locks == 1 and aligner.relocks == 1
    before, after = offsets[0], offsets[-1]
    assert np.all(offsets[: 100 * CAPTURE] == before)
    # The reference is now exactly as much earlier as the headset plays later: never after its echo.
    assert after - before == lost
    assert np.all(offsets[-290 * CAPTURE :] == after)


def _push_model(steps: list[str]) -> tuple[ReferenceAligner, list[np.ndarray], list[int]]:
    """libpulse's way: 'ref' is a reference period played, 'mic' a mic period captured."""
    aligner, far, fed, refs, waiting = _aligner(), _numbered(8), 0, [], []
    for step in steps:
        if step == "ref":
            ready = aligner.reference_period(far[fed : fed + CAPTURE])
            fed += CAPTURE
        else:
            ready = aligner.mic(np.zeros(CAPTURE))
        refs += [ref for _mic, ref in ready]
        waiting.append(aligner.waiting)
    return aligner, refs, waiting


def test_pulse_mic_frames_wait_for_their_reference_whatever_order_the_streams_deliver_in():
    """The reference and mic periods arrive at nearly the same moment in either order; a mic frame
    must never be cleaned against a reference that has not been played yet (zeros)."""
    rng = np.random.default_rng(3)
    order = ["ref", "mic"] * 20 + ["mic", "ref"] * 20  # the streams swap order halfway through
    order += [step for _ in range(60) for step in rng.permutation(["ref", "mic"])]
    order += ["mic", "mic", "ref", "ref"] + ["ref", "mic"] * 20  # a reference period late by one
    order += ["mic"] * 4 + ["ref"] * 4 + ["ref", "mic"] * 20  # a 40 ms stall: each backlog comes at once
    aligner, refs, _ = _push_model(order)
    offsets = _offsets(refs)
    assert aligner.missing == 0
    assert aligner.locks == 1 and aligner.relocks == 0
    assert aligner.catch_ups == 0  # jitter and a stall are not a lasting shift
    assert np.all(offsets == offsets[0])
    assert len(refs) == order.count("mic")  # every mic frame went out


def test_pulse_mic_frames_stop_waiting_when_the_reference_stream_is_gone():
    aligner, refs, _ = _push_model(["ref", "mic"] * 20 + ["mic"] * 50)
    assert len(refs) >= 70 - ReferenceAligner.MAX_WAITING  # held at most MAX_WAITING periods
    assert aligner.waiting == 0


@pytest.mark.parametrize("reference_first", [True, False])
def test_pulse_mic_frames_stop_waiting_for_a_reference_that_fell_behind_for_good(reference_first: bool):
    """Far-end audio the server dropped (two periods here) puts every later reference period two
    periods behind the mic: the mic frames waiting for it would hold the agent's voice back for
    good. Within two seconds the alignment moves, once, by at most the true shift."""
    both = ["ref", "mic"] if reference_first else ["mic", "ref"]
    steps = both * 100 + ["mic", "mic"] + both * 300
    aligner, refs, waiting = _push_model(steps)
    offsets = _offsets(refs)
    assert aligner.catch_ups == 1
    assert aligner.locks == 1 and aligner.relocks == 0 and aligner.missing == 0
    assert set(offsets[: 100 * CAPTURE]) == {offsets[0]}
    moved = offsets[-1] - offsets[0]
    assert CAPTURE <= moved <= 2 * CAPTURE  # the reference never comes after its echo
    # Frames held after a mic period: two before the catch-up; afterwards one, the wait for the
    # next reference period that the streams' order alone gives.
    mic_steps = [w for step, w in zip(steps, waiting, strict=True) if step == "mic"]
    assert set(mic_steps[110:190]) == {2}
    assert set(mic_steps[-100:]) == {1}
    assert len(refs) + aligner.waiting == steps.count("mic")  # no mic frame lost on the way


class _FakePlayback:
    """The libpulse playback seam: what was written, and a server queue steady at its target."""

    def __init__(self, seconds: float = RealtimeConfig.playback_queue_ms / 1000) -> None:
        self.written: list[np.ndarray] = []
        self.seconds = seconds

    def latency(self) -> float:
        return self.seconds

    def write(self, samples: np.ndarray, latency: float | None) -> None:
        self.written.append(samples)


def test_pulse_mic_frames_are_dropped_while_the_server_holds_a_frame_too_many():
    """A queue inflated beyond its target (audio that arrived in a burst) would delay the agent's
    voice until drift steering drains it at 2 ms a second; whole frames are dropped instead."""
    engine = Realtime(RealtimeConfig(setup_devices=False, aec=False, gate=False))
    backend = PulseBackend(engine)
    speaker, mic_out = _FakePlayback(), _FakePlayback()
    backend.speaker, backend.mic_out = speaker, mic_out  # type: ignore[assignment]
    queue = RealtimeConfig.playback_queue_ms / 1000
    reported = [queue] * 10 + [queue + 0.035, queue + 0.025, queue + 0.015] + [queue + 0.004] * 10
    for seconds in reported:
        mic_out.seconds = seconds
        backend.on_reference(np.ones(engine.frame))
        backend.on_mic(np.ones(engine.frame))
    assert engine.stats.mic_dropped == 3  # only the frames that found more than target + a frame
    assert len(mic_out.written) == len(reported) - 3
