"""The real-time engine records what the customer heard (after mute) and the customer reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from offhook.audio.realtime import Realtime, RealtimeConfig, RecordingConfig
from offhook.recording import meta as M
from offhook.recording import store
from tests.recording.conftest import FRAME, RATE


def test_engine_frames_reach_the_recorder_after_mute(tmp_path: Path, keys) -> None:
    recipient, identity = keys
    replies: list[dict] = []
    engine = Realtime(
        RealtimeConfig(
            rate=RATE,
            aec=False,
            gate=False,
            ns=False,
            setup_devices=False,
            recording=RecordingConfig(tmp_path / "rec", recipient, "ann"),
        )
    )
    engine._recording_reply = replies.append  # type: ignore[method-assign]  # no control channel here
    assert engine.recorders is not None
    engine.recorders._on_reply = replies.append
    t = np.arange(FRAME) / RATE
    engine.recorders.event("c1", "connect")
    for i in range(300):
        if i == 150:
            engine.set_muted(True)
        mic = (0.2 * np.sin(2 * np.pi * 300 * (t + i * FRAME / RATE))).astype(np.float32)
        ref = (0.2 * np.sin(2 * np.pi * 700 * (t + i * FRAME / RATE))).astype(np.float32)
        engine.clean(mic, ref)
    engine.stop()  # seals the recording
    assert [r["recording"] for r in replies] == ["on", "off"]
    (sidecar,) = (tmp_path / "rec").glob("*.json")
    meta = M.read(sidecar)
    out = tmp_path / "out.ogg"
    store.decrypt(sidecar.parent / meta.audio, identity, out)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == RATE and abs(len(audio) - 300 * FRAME) <= 2 * FRAME
    assert np.max(np.abs(audio[50 * FRAME : 140 * FRAME, 0])) > 0.01  # the agent (chain bypassed)
    assert np.max(np.abs(audio[50 * FRAME : 140 * FRAME, 1])) > 0.05  # the customer
    assert np.max(np.abs(audio[170 * FRAME : 290 * FRAME, 1])) > 0.05  # still heard while muted
    assert np.max(np.abs(audio[170 * FRAME : 290 * FRAME, 0])) <= 10 ** (-50 / 20)  # muted: silence went out
