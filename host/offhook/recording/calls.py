"""The pipeline's side of recording, without sockets: one Recorder per connected Call-ID.

It follows the control channel's call events (offhook.audio.control: connect, hold, resume,
consult, end) like ``CallMeters`` does, plus pause/resume from the agent, and takes the device-rate
frames from the audio thread: left, what the softphone was given (the agent as the customer heard
them, mute included); right, what the softphone played (the customer). Only the call that is
talking gets audio; a held call, and the customer's call while the agent consults the supervisor,
get silence (the consult leg never enters the customer's file). Every change of a call's
recording is reported through ``on_reply`` as ``{"call", "recording": on|paused|failed|off}``
(with ``reason`` on failure) for the daemon's Desk.recording_changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from offhook.recording.age import RecipientError
from offhook.recording.store import purge_due  # noqa: F401  (here first; the daemon imports it from store)
from offhook.recording.writer import Recorder

Reply = dict[str, Any]


class CallRecorders:
    def __init__(
        self,
        directory: Path,
        recipient: str,
        agent: str,
        on_reply: Callable[[Reply], None],
        samplerate: int = 48000,
        make: Callable[..., Recorder] = Recorder,
    ) -> None:
        self.directory = directory
        self.recipient = recipient
        self.agent = agent
        self.samplerate = samplerate
        self._on_reply = on_reply
        self._make = make
        self._lock = threading.Lock()
        self._calls: dict[str, tuple[Recorder, str]] = {}  # Call-ID -> recorder, talk/hold/consult
        self._ending: set[Recorder] = set()  # ended calls whose writer is still sealing the file
        self.writer_cpu_s = 0.0  # of recordings closed so far

    def event(self, call_id: str, event: str) -> None:
        """A call event from the daemon (control thread)."""
        with self._lock:
            entry = self._calls.get(call_id)
        if event == "connect":
            if entry is None:
                self._connect(call_id)
            else:  # a restarted daemon announces its calls again: tell it how this one stands
                recorder = entry[0]
                self._reply(call_id, "failed" if recorder.failed else "paused" if recorder.paused else "on")
            return
        if entry is None:
            return
        if event == "end":
            recorder = entry[0]
            with self._lock:
                self._calls.pop(call_id, None)
                self._ending.add(recorder)
            meta = recorder.close()  # waits for the writer: on the control thread, never the audio one
            with self._lock:
                self._ending.discard(recorder)
            self.writer_cpu_s += recorder.writer_cpu_s
            if not recorder.failed:
                self._reply(call_id, "off", file=recorder.audio_path.name, status=meta.status)
            return
        state = {"hold": "hold", "consult": "consult", "resume": "talk"}.get(event)
        if state is not None:
            with self._lock:
                self._calls[call_id] = (entry[0], state)

    def _connect(self, call_id: str) -> None:
        def failed(reason: str) -> None:
            self._reply(call_id, "failed", reason=reason)

        try:
            recorder = self._make(self.directory, self.recipient, call_id, self.agent, self.samplerate, failed)
        except RecipientError as exc:  # the config checks it; a pipeline started by hand may not
            failed(str(exc))
            return
        if recorder.start():
            with self._lock:
                self._calls[call_id] = (recorder, "talk")
            self._reply(call_id, "on")

    def pause(self, call_id: str, paused: bool) -> str:
        """The agent's pause or resume; the state to report (off: not recorded here)."""
        with self._lock:
            entry = self._calls.get(call_id)
        if entry is None:
            self._reply(call_id, "off")
            return "off"
        recorder = entry[0]
        if recorder.failed:
            return "failed"
        if paused:
            recorder.pause()
        else:
            recorder.resume()
        state = "paused" if paused else "on"
        self._reply(call_id, state)
        return state

    def frame(self, agent: np.ndarray, customer: np.ndarray) -> None:
        """One device-rate frame each way, from the audio thread: never blocks on the disk."""
        with self._lock:
            calls = list(self._calls.values())
        for recorder, state in calls:
            if state == "talk":
                recorder.push(agent, customer)
            else:
                recorder.push_silence(len(agent))

    def close(self) -> None:
        """The pipeline stops: every recording is sealed (its call goes on without one), those of
        calls that ended just before included: this waits for their writers too."""
        with self._lock:
            calls = list(self._calls)
        for call_id in calls:
            self.event(call_id, "end")
        with self._lock:
            ending = list(self._ending)
        for recorder in ending:
            recorder.close()  # a second close only waits for the writer

    def _reply(self, call_id: str, state: str, **extra: Any) -> None:
        self._on_reply({"call": call_id, "recording": state, **extra})
