"""offhook's libpulse binding against a real PulseAudio server started by the test (null sinks)."""

from __future__ import annotations

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


def test_played_audio_comes_back_whole_and_in_time(server):
    """Each captured period pushes the next period out (the pipeline's pattern): the capture is
    the played signal, bit for bit, at one lag, with no more audio than time passed."""
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
    # The signal itself, unchanged but for the s16 rounding, at one lag.
    corr = np.correlate(out[: 2 * RATE], signal[: RATE // 2], mode="valid")
    lag = int(np.argmax(corr))
    back = out[lag : lag + 2 * RATE]
    assert np.max(np.abs(back - signal[: len(back)])) < 2 / 32768
    assert speaker.counters.underflows == 0
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
