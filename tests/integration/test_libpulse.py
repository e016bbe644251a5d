"""offhook's libpulse binding against a real PulseAudio server started by the test (null sinks)."""

from __future__ import annotations

import itertools
import shutil
import time

import numpy as np
import pytest

from offhook.audio.libpulse import PulseStreams
from offhook.audio.pulse import FAR_SINK, MIC_SOURCE, PulseError, PulseTestServer, ensure_virtual_devices, pactl

pytestmark = pytest.mark.skipif(shutil.which("pulseaudio") is None, reason="needs pulseaudio (make test installs it)")

RATE = 48000


@pytest.fixture
def server(monkeypatch):
    srv = PulseTestServer(sinks=("room",), sources={"headset_mic": "room.monitor"}).start()
    for key in ("PULSE_RUNTIME_PATH", "PULSE_STATE_PATH", "PULSE_SERVER", "PULSE_COOKIE", "HOME"):
        monkeypatch.setenv(key, srv.env[key])
    yield srv
    srv.stop()


def _chirps(n: int) -> np.ndarray:
    """Speech-like bursts (not a steady tone) so a correlation peak is unambiguous."""
    rng = np.random.default_rng(7)
    x = np.clip(0.2 * rng.standard_normal(n), -0.9, 0.9)  # inside s16 range: no clipping
    envelope = (np.arange(n) // (RATE // 5)) % 2  # 200 ms on, 200 ms off
    return x * envelope


S16_STEP = 1 / 32768


def _played_pieces(out: np.ndarray, signal: np.ndarray) -> list[tuple[int, int, int]]:
    """Split a capture into the runs that are the signal unchanged (but for s16 rounding):
    ``(capture index, signal index, length)`` each, in capture order. Silence between runs is
    skipped; a run ends where the capture stops being the signal at that lag (a dropout)."""
    pieces: list[tuple[int, int, int]] = []
    at = 0
    while True:
        audible = np.flatnonzero(np.abs(out[at:]) > 64 * S16_STEP)
        if not len(audible):
            return pieces
        at += int(audible[0])
        # Where in the signal this sample is: the candidates equal to it, then the one whose
        # next samples match longest (the signal is noise bursts, so one candidate wins at once).
        best_start, best_length = -1, 0
        for start in map(int, np.flatnonzero(np.abs(signal - out[at]) < 2 * S16_STEP)):
            n = min(len(out) - at, len(signal) - start)
            wrong = np.flatnonzero(np.abs(out[at : at + n] - signal[start : start + n]) >= 2 * S16_STEP)
            length = int(wrong[0]) if len(wrong) else n
            if length > best_length:
                best_start, best_length = start, length
        assert best_length >= 64, f"captured audio at {at} is not the played signal"
        pieces.append((at, best_start, best_length))
        at += best_length


def test_played_audio_comes_back_whole_and_in_time(server):
    """Each captured period pushes the next period out (the pipeline's pattern): the capture is
    the played signal, bit for bit, at one lag, with no more audio than time passed.

    A test machine can stall for longer than the server holds (a hypervisor's steal here). Then
    the server reports the underflow and keeps time by dropping what came too late: the capture
    may jump ahead in the signal, once per dropout the server reported, but never repeat, reorder
    or alter a sample."""
    signal = _chirps(3 * RATE)
    position = [0]
    recorded: list[np.ndarray] = []
    streams = PulseStreams(RATE)
    # A generous 100 ms in the server: a stalled test machine must not drop data here.
    speaker = streams.add_playback("test speaker", "room", 480, latency=100 * RATE // 1000)

    def on_capture(samples: np.ndarray) -> None:
        recorded.append(samples)
        start = position[0]
        chunk = signal[start : start + 480]
        position[0] += 480
        speaker.write(np.concatenate((chunk, np.zeros(480 - len(chunk)))), speaker.latency())

    streams.add_record("test mic", "headset_mic", 480, on_capture)
    streams.start()
    started = time.monotonic()
    time.sleep(4.0)
    streams.stop()
    elapsed = time.monotonic() - started
    out = np.concatenate(recorded)
    assert all(len(chunk) == 480 for chunk in recorded)  # whole periods only
    # The null sink's monitor runs on the wall clock: no more audio than time passed (a sink
    # that rewinds would hand its monitor rewritten audio twice), and not much less.
    assert len(out) <= (elapsed + 0.1) * RATE
    assert len(out) >= (elapsed - 1.0) * RATE
    pieces = _played_pieces(out, signal)
    dropouts = sum(c.underflows + c.overflows + c.holes + c.resyncs for c in streams.counters)
    assert 1 <= len(pieces) <= 1 + dropouts, (pieces, streams.counters)
    for (at, start, length), (next_at, next_start, _) in itertools.pairwise(pieces):
        assert next_at >= at + length and next_start >= start + length  # in order, nothing twice
    if not dropouts:  # the whole signal, at one lag
        ((at, start, length),) = pieces
        assert start == np.flatnonzero(signal)[0] and start + length == len(signal)
    assert not streams.started


def test_an_unknown_device_is_a_clear_error(server):
    streams = PulseStreams(RATE)
    streams.add_record("test mic", "no_such_source", 480, lambda samples: None)
    with pytest.raises(PulseError, match=r"test mic.*no_such_source"):
        streams.start()
    assert not streams.started


def test_no_server_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/nothing-here")
    streams = PulseStreams(RATE)
    streams.add_record("test mic", None, 480, lambda samples: None)
    with pytest.raises(PulseError, match="connection"):
        streams.start()


def test_a_failing_callback_is_reported_and_the_others_go_on(server):
    recorded: list[np.ndarray] = []

    def broken(samples: np.ndarray) -> None:
        raise ValueError("bug in the chain")

    streams = PulseStreams(RATE)
    streams.add_record("broken", "headset_mic", 480, broken)
    streams.add_record("test mic", "headset_mic", 480, recorded.append)
    streams.start()
    time.sleep(0.5)
    before = len(recorded)
    time.sleep(0.5)
    streams.stop()
    assert isinstance(streams.callback_error, ValueError)
    assert len(recorded) > before  # the mainloop survived the exception


def test_virtual_devices_are_loaded_once_and_without_rewinds(server):
    loaded = ensure_virtual_devices(env=server.env)
    assert len(loaded) == 3
    modules = pactl("list", "short", "modules", env=server.env)
    null_sinks = [line for line in modules.splitlines() if "module-null-sink" in line and "offhook" in line]
    assert len(null_sinks) == 2 and all("norewinds=1" in line for line in null_sinks)
    sources = pactl("list", "short", "sources", env=server.env)
    assert MIC_SOURCE in sources and f"{FAR_SINK}.monitor" in sources
    assert ensure_virtual_devices(env=server.env) == []  # already there: nothing loaded twice
