"""Recording over the daemon <-> pipeline channel: pause/resume in, recording states out."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from offhook.audio.control import AudioChannel, ControlServer, parse_message, parse_reply, record_request
from offhook.recording.calls import CallRecorders
from tests.recording.conftest import FRAME


def collect(channel: AudioChannel, count: int, timeout: float = 5.0) -> list:
    replies: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(replies) < count:
        replies += channel.receive()
        time.sleep(0.01)
    return replies


def test_record_messages_parse() -> None:
    assert parse_message(record_request("c1", True)) == ("c1", "record", "pause")
    assert parse_message(record_request("c1", False)) == ("c1", "record", "resume")
    with pytest.raises(ValueError, match="pause or resume"):
        parse_message(b'{"call": "c1", "record": "stop"}')
    with pytest.raises(ValueError):
        parse_message(b'{"call": "c1", "record": "pause", "event": "end"}')
    assert parse_reply(b'{"call": "c1", "recording": "failed", "reason": "disk full"}') == {
        "call": "c1", "recording": "failed", "reason": "disk full"}  # fmt: skip
    assert isinstance(parse_reply(b'{"call": "c1", "recording": "maybe"}'), str)


def test_pause_resume_and_states_reach_the_daemon(tmp_path: Path, keys) -> None:
    audio, daemon = tmp_path / "audio.sock", tmp_path / "daemon.sock"
    server: ControlServer | None = None

    def on_reply(reply: dict) -> None:
        assert server is not None
        server.send(reply)

    recorders = CallRecorders(tmp_path / "rec", keys[0], "ann", on_reply)
    server = ControlServer(audio, lambda muted: None, None, recorders)
    channel = AudioChannel(daemon, audio)
    try:
        channel.send("c1", "connect")
        assert collect(channel, 1) == [{"call": "c1", "recording": "on"}]
        recorders.frame(np.zeros(FRAME, np.float32), np.zeros(FRAME, np.float32))
        channel.record("c1", True)
        assert collect(channel, 1) == [{"call": "c1", "recording": "paused"}]
        channel.record("c1", False)
        assert collect(channel, 1) == [{"call": "c1", "recording": "on"}]
        channel.send("c1", "end")
        (off,) = collect(channel, 1)
        assert off["recording"] == "off" and off["file"].endswith(".age")
        server.send({"call": "c2", "recording": "failed", "reason": "disk full"})  # unasked, any thread
        assert collect(channel, 1) == [{"call": "c2", "recording": "failed", "reason": "disk full"}]
    finally:
        channel.close()
        server.close()
        recorders.close()


def test_without_recorders_a_pause_is_answered_off(tmp_path: Path) -> None:
    audio, daemon = tmp_path / "audio.sock", tmp_path / "daemon.sock"
    server = ControlServer(audio, lambda muted: None)
    channel = AudioChannel(daemon, audio)
    try:
        channel.record("c1", True)
        assert collect(channel, 1) == [{"call": "c1", "recording": "off"}]
    finally:
        channel.close()
        server.close()
