"""The daemon <-> pipeline channel (audio/control.py): call events in, figures out, mute as ever."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from offhook.audio.chain import Chain, ChainConfig
from offhook.audio.control import AudioChannel, CallMeters, ControlServer, call_event, parse_event, parse_reply

FRAME = 160


def wait_for(channel: AudioChannel, timeout: float = 3.0) -> list[tuple[str, dict] | str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = channel.receive()
        if replies:
            return replies
        time.sleep(0.01)
    return []


def talk(meters: CallMeters, seconds: float, agent: bool, customer: bool, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(FRAME) / 16000
    for k in range(int(seconds * 100)):
        noise = 1e-4 * rng.standard_normal(FRAME)
        on = k % 50 < 40  # syllable-like bursts: 400 ms on, 100 ms pauses (bridged into one turn)
        mic = noise + (0.2 * np.sin(2 * np.pi * 300 * (t + k / 100)) if agent and on else 0.0)
        ref = noise + (0.2 * np.sin(2 * np.pi * 500 * (t + k / 100)) if customer and on else 0.0)
        meters.frame(mic, mic, ref, 0.0)


@pytest.fixture
def sockets(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "audio.sock", tmp_path / "daemon.sock"


def test_bad_messages_are_one_line_refusals() -> None:
    for bad in (b"\xff", b"[]", b"{}", b'{"call": "a"}', b'{"call": "", "event": "end"}',
                b'{"call": "a", "event": "dance"}', b'{"call": 5, "event": "end"}',
                b'{"call": "a", "event": "end", "x": 1}', b'{"call": "a\\n", "event": "end"}'):  # fmt: skip
        with pytest.raises(ValueError) as caught:
            parse_event(bad)
        assert "\n" not in str(caught.value) and str(caught.value)
    assert parse_event(call_event("abc@host", "hold")) == ("abc@host", "hold")
    with pytest.raises(ValueError, match="unknown call event"):
        call_event("a", "dance")
    assert parse_reply(b"nope") == "audio pipeline sent something that is not JSON"
    assert parse_reply(b'{"error": "x"}') == "audio pipeline refused: x"
    assert parse_reply(b'{"call": "a", "figures": {"holds": 0}}') == ("a", {"holds": 0})


def test_server_refuses_bad_message_and_changes_nothing(sockets: tuple[Path, Path]) -> None:
    audio, daemon = sockets
    meters = CallMeters()
    server = ControlServer(audio, lambda muted: None, meters)
    channel = AudioChannel(daemon, audio)
    try:
        channel.send("c1", "connect")
        channel._sock.sendto(b'{"call": "c1", "event": "explode"}', str(audio))
        replies = wait_for(channel)
        assert replies == ["audio pipeline refused: event must be one of connect, hold, resume, consult, end"]
        assert meters.calls == {"c1": "talk"}
    finally:
        channel.close()
        server.close()


def test_unknown_call_ids_are_ignored() -> None:
    meters = CallMeters()
    for event in ("hold", "resume", "consult", "end"):
        assert meters.event("never-connected", event) is None
    assert meters.calls == {}
    meters.event("c1", "connect")
    talk(meters, 1.0, agent=True, customer=False)
    assert meters.event("other", "end") is None
    assert meters.calls == {"c1": "talk"}


def test_figures_at_end_follow_hold_and_consult() -> None:
    meters = CallMeters()
    meters.event("c1", "connect")
    meters.event("c1", "connect")  # a restarted daemon re-announcing keeps the meter
    talk(meters, 4.0, agent=True, customer=False, seed=1)
    meters.event("c1", "hold")
    talk(meters, 2.0, agent=True, customer=False, seed=2)
    meters.event("c1", "resume")
    talk(meters, 4.0, agent=False, customer=True, seed=3)
    meters.event("c1", "consult")
    talk(meters, 1.0, agent=True, customer=True, seed=4)
    figures = meters.event("c1", "end")
    assert figures is not None and meters.calls == {}
    assert figures["connected_s"] == pytest.approx(8.0, abs=0.02)
    assert figures["hold_s"] == pytest.approx(3.0, abs=0.02)
    assert figures["agent_talk_s"] == pytest.approx(3.7, abs=0.5)
    assert figures["customer_talk_s"] == pytest.approx(3.7, abs=0.5)
    assert figures["holds"] == 2
    assert meters.event("c1", "end") is None  # once only


def test_mute_is_talk_while_muted_and_still_mutes(sockets: tuple[Path, Path]) -> None:
    audio, daemon = sockets
    muted: list[bool] = []
    meters = CallMeters()
    server = ControlServer(audio, muted.append, meters)
    channel = AudioChannel(daemon, audio)
    try:
        channel.send("c1", "connect")
        channel.mute(True)
        deadline = time.monotonic() + 3
        while not muted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert muted == [True] and meters.muted
        talk(meters, 3.0, agent=True, customer=False)
        channel.send("c1", "end")
        ((call, figures),) = wait_for(channel)  # type: ignore[misc]
        assert call == "c1"
        assert figures["agent_talk_s"] == 0.0
        assert figures["talking_while_muted_s"] == pytest.approx(2.7, abs=0.5)
    finally:
        channel.close()
        server.close()


def test_daemon_restart_mid_call_gets_the_figures(sockets: tuple[Path, Path]) -> None:
    audio, daemon = sockets
    meters = CallMeters()
    server = ControlServer(audio, lambda muted: None, meters)
    first = AudioChannel(daemon, audio)
    try:
        first.send("c1", "connect")
        deadline = time.monotonic() + 3
        while not meters.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        talk(meters, 2.0, agent=True, customer=False)
        first.close()  # the daemon dies mid-call
        talk(meters, 2.0, agent=False, customer=True)
        again = AudioChannel(daemon, audio)  # the next run binds the same path
        again.send("c1", "connect")
        again.send("c1", "end")
        ((call, figures),) = wait_for(again)  # type: ignore[misc]
        assert call == "c1"
        assert figures["connected_s"] == pytest.approx(4.0, abs=0.02)
        again.close()
    finally:
        server.close()


def test_figures_with_the_daemon_gone_are_dropped_not_fatal(sockets: tuple[Path, Path]) -> None:
    audio, daemon = sockets
    meters = CallMeters()
    server = ControlServer(audio, lambda muted: None, meters)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(daemon))
            sock.sendto(call_event("c1", "connect"), str(audio))
            sock.sendto(call_event("c1", "end"), str(audio))
        daemon.unlink()
        time.sleep(0.3)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:  # the server still serves
            sock.bind(str(daemon))
            sock.sendto(b"{}", str(audio))
            sock.settimeout(3)
            assert "error" in json.loads(sock.recv(4096))
    finally:
        server.close()


def test_chain_tap_hands_the_meter_16k_frames_before_the_gate() -> None:
    chain = Chain(ChainConfig(rate=48000, gate=True))
    seen: list[tuple[int, int, int, float]] = []
    chain.tap = lambda mic, cleaned, ref, left: seen.append((len(mic), len(cleaned), len(ref), left))
    rng = np.random.default_rng(0)
    chain.push(0.01 * rng.standard_normal(4800), 0.01 * rng.standard_normal(4800))
    assert len(seen) == 10 and all(s[:3] == (FRAME, FRAME, FRAME) and s[3] >= 0.0 for s in seen)


def test_meters_are_safe_across_threads() -> None:
    meters = CallMeters()
    meters.event("c1", "connect")
    worker = threading.Thread(target=talk, args=(meters, 2.0, True, False))
    worker.start()
    for event in ("hold", "resume") * 20:
        meters.event("c1", event)
    worker.join()
    figures = meters.event("c1", "end")
    assert figures is not None and figures["connected_s"] + figures["hold_s"] == pytest.approx(2.0, abs=0.02)


def test_figures_fit_a_datagram_after_an_hour_of_dead_air() -> None:
    meters = CallMeters()
    meters.event("c1", "connect")
    for k in range(600):  # ten minutes: 3.5 s of silence, then a word, over and over
        talk(meters, 0.5 if k % 2 else 3.5, agent=bool(k % 2), customer=False, seed=k)
    figures = meters.event("c1", "end")
    assert figures is not None and figures["dead_air_count"] > 200
    assert "dead_airs" not in figures and len(json.dumps({"call": "c1", "figures": figures})) < 4096


def test_tap_is_before_noise_suppression_and_changes_no_output() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(16000 * 3) / 16000
    ref = 0.1 * np.sin(2 * np.pi * 400 * t) * (t % 1 < 0.5)
    mic = 0.01 * rng.standard_normal(len(t)) + 0.3 * np.roll(ref, 80)  # office noise and echo
    plain = Chain(ChainConfig(ns=True, gate=False))
    tapped = Chain(ChainConfig(ns=True, gate=False))
    kept: list[np.ndarray] = []
    tapped.tap = lambda mic, cleaned, ref, left: kept.append(cleaned.copy())
    out_plain = plain.push(mic, ref)
    out_tapped = tapped.push(mic, ref)
    assert np.array_equal(out_plain, out_tapped)  # the meter never changes what the customer hears
    cleaned = np.concatenate(kept)
    quiet = slice(16000 + 9000, 16000 + 15000)  # the far end silent: only the office noise
    # The noise suppressor turned the office down in the output, not in what the meter hears.
    assert np.mean(cleaned[quiet] ** 2) > 4 * np.mean(out_tapped[quiet] ** 2)
