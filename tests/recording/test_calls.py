"""The pipeline's recorders by Call-ID, driven as the control channel and the audio thread would."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from offhook.recording import meta as M
from offhook.recording import store
from offhook.recording.calls import CallRecorders, purge_due
from offhook.recording.writer import Recorder
from tests.recording.conftest import FRAME, RATE


def test_talk_hold_consult_pause_end(tmp_path, keys, talkers):
    recipient, identity = keys
    agent, customer = talkers
    replies: list[dict] = []
    calls = CallRecorders(tmp_path / "rec", recipient, "ann", replies.append)
    calls.event("c1", "connect")
    calls.event("nobody", "hold")  # never connected: ignored
    script = {100: ("event", "hold"), 150: ("event", "resume"), 200: ("event", "consult"), 250: ("event", "resume")}
    script |= {300: ("pause", True), 350: ("pause", False)}
    for i in range(400):
        if i in script:
            kind, arg = script[i]
            calls.event("c1", arg) if kind == "event" else calls.pause("c1", arg)
        part = slice(i * FRAME, (i + 1) * FRAME)
        calls.frame(agent[part], customer[part])
    calls.event("c1", "end")
    assert [r["recording"] for r in replies] == ["on", "paused", "on", "off"]
    (sidecar,) = (tmp_path / "rec").glob("*.json")
    meta = M.read(sidecar)
    assert meta.paused == [[3.0, 3.5]]  # hold and consult are silence, not pauses
    out = tmp_path / "out.ogg"
    store.decrypt(sidecar.parent / meta.audio, identity, out)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == RATE and len(audio) == 400 * FRAME
    for start, end in ((100, 150), (200, 250), (300, 350)):  # hold, consult, pause: both sides silent
        assert np.max(np.abs(audio[start * FRAME : end * FRAME])) <= 10 ** (-50 / 20)
    assert np.max(np.abs(audio[10 * FRAME : 90 * FRAME, 1])) > 0.05
    assert calls.writer_cpu_s > 0


def test_unwritable_directory_reports_failed_and_the_frames_go_on(tmp_path, keys):
    blocked = tmp_path / "file"
    blocked.write_text("")
    replies: list[dict] = []
    calls = CallRecorders(blocked / "rec", keys[0], "ann", replies.append)
    calls.event("c1", "connect")
    calls.frame(np.zeros(FRAME, np.float32), np.zeros(FRAME, np.float32))
    assert replies[0]["recording"] == "failed" and "cannot record into" in replies[0]["reason"]
    assert calls.pause("c1", True) == "off"


def test_close_seals_every_recording(tmp_path, keys):
    replies: list[dict] = []
    calls = CallRecorders(tmp_path, keys[0], "ann", replies.append)
    calls.event("a", "connect")
    calls.event("b", "connect")
    calls.close()
    assert sorted(r["call"] for r in replies if r["recording"] == "off") == ["a", "b"]
    assert all(M.read(p).status == "complete" for p in tmp_path.glob("*.json"))


def test_close_waits_for_a_call_that_ended_and_is_still_being_sealed(tmp_path, keys):
    """The pipeline stopping just after a call ended (its writer still sealing the file) must
    not return before the file is sealed: the process may exit right after."""
    release = threading.Event()

    class SlowSeal(Recorder):
        def _finish(self, status: str) -> None:
            release.wait(10)
            super()._finish(status)

    replies: list[dict] = []
    calls = CallRecorders(tmp_path, keys[0], "ann", replies.append, make=SlowSeal)
    calls.event("c1", "connect")
    ender = threading.Thread(target=calls.event, args=("c1", "end"))
    ender.start()
    while calls._calls:  # the end took the call out and is waiting for the writer
        time.sleep(0.01)
    closer = threading.Thread(target=calls.close)
    closer.start()
    closer.join(0.5)
    assert closer.is_alive()  # still waiting for c1's seal
    release.set()
    closer.join(10)
    ender.join(10)
    assert not closer.is_alive()
    (sidecar,) = tmp_path.glob("*.json")
    assert M.read(sidecar).status == "complete"
    assert [r["recording"] for r in replies] == ["on", "off"]  # one off, not one per close


def test_purge_once_a_day():
    assert purge_due(None, 1000.0)
    assert not purge_due(1000.0, 1000.0 + 3600)
    assert purge_due(1000.0, 1000.0 + 86400)
    assert purge_due(1000.0, 10.0)  # the clock went back: do not wait a day more


def test_a_bad_recipient_is_a_failed_recording_not_an_exception():
    replies: list[dict] = []
    calls = CallRecorders(Path("/nonexistent"), "age1nope", "ann", replies.append)
    calls.event("c1", "connect")
    assert replies[0]["recording"] == "failed" and "recipient" in replies[0]["reason"]


def test_a_restarted_daemon_learns_how_the_recording_stands(tmp_path, keys):
    replies: list[dict] = []
    calls = CallRecorders(tmp_path, keys[0], "ann", replies.append)
    calls.event("c1", "connect")
    calls.pause("c1", True)
    calls.event("c1", "connect")  # the daemon restarted and announces the call again
    assert [r["recording"] for r in replies] == ["on", "paused", "paused"]
    calls.close()
