"""The daemon and a recording pipeline over the real control socket: the desk follows the
recorder's states, the agent's pause reaches the recorder, and retention runs at start."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from offhook import config
from offhook.actions import Action
from offhook.audio.control import AudioChannel, ControlServer
from offhook.daemon.service import Daemon
from offhook.recording import meta as M
from offhook.recording.calls import CallRecorders
from offhook.softphone.base import EventKind, SoftphoneEvent
from offhook.softphone.web import WebSoftphone


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


def test_states_pause_and_purge(tmp_path: Path, keys) -> None:
    recipient = keys[0]
    rec_dir = tmp_path / "rec"
    rec_dir.mkdir()
    old = M.Meta("old-call", "ann", time.time() - 100 * 86400, 48000, recipient=recipient, audio="old.ogg.age")
    M.write(rec_dir / ("old" + M.SUFFIX), old)
    (rec_dir / "old.ogg.age").write_bytes(b"x")
    server: ControlServer | None = None

    def on_reply(reply: dict[str, Any]) -> None:
        assert server is not None
        server.send(reply)

    recorders = CallRecorders(rec_dir, recipient, "ann", on_reply)
    control = tmp_path / "audio.sock"
    server = ControlServer(control, lambda muted: None, None, recorders)
    channel = AudioChannel(tmp_path / "daemon.sock", control)
    cfg = config.validate(
        {"timers": {"wrap_up_s": 0}, "recording": {"enabled": True, "recipient": recipient, "directory": str(rec_dir)}}
    )
    daemon = Daemon(cfg, WebSoftphone(), tmp_path / "state.json", audio_channel=channel)  # no metrics store
    seen: list[str] = []

    async def call() -> None:
        running = asyncio.create_task(daemon.run())
        await asyncio.sleep(0.1)
        for t, kind in enumerate((EventKind.INCOMING, EventKind.ESTABLISHED), 1):
            await daemon.apply(daemon.desk.softphone_event(SoftphoneEvent(kind, "c1@pbx", "sip:1@pbx", "inbound"), t))
        await until(lambda: daemon.desk.recording_state == "on")
        seen.append(daemon.desk.recording_state)
        await daemon.apply(daemon.desk.act(Action.TOGGLE_RECORDING_PAUSE, 3.0))
        await until(lambda: daemon.desk.recording_state == "paused")
        seen.append(daemon.desk.recording_state)
        await daemon.apply(daemon.desk.act(Action.TOGGLE_RECORDING_PAUSE, 4.0))
        await until(lambda: daemon.desk.recording_state == "on")
        seen.append(daemon.desk.recording_state)
        await until(lambda: not (rec_dir / "old.ogg.age").exists())
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    try:
        asyncio.run(call())
    finally:
        channel.close()
        server.close()
        recorders.close()
    assert seen == ["on", "paused", "on"]
    assert not (rec_dir / "old.ogg.age").exists() and not (rec_dir / ("old" + M.SUFFIX)).exists()
    assert any(name.endswith(M.AUDIO_SUFFIX) for name in os.listdir(rec_dir))  # this call's, kept
