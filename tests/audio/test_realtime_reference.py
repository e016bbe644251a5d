"""The real-time pipeline's echo reference stays aligned by sample count when callbacks jitter or
go missing (no PortAudio needed: the callbacks are driven directly)."""

from __future__ import annotations

import numpy as np

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
            engine._speaker_out(None, period, None, 0)
        refs.append(engine._take_played(capture))
    ref = np.concatenate(refs)
    known = ref > 0
    # Every reference sample present is the played sample a constant number of samples back.
    offsets = np.arange(len(ref))[known] - (ref[known] - 1)
    assert engine.stats.ref_relocks == 1
    assert np.all(offsets == offsets[0])
    assert known.mean() > 0.95
