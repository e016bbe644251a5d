"""A real call's conversation analytics reach its metrics record (issue 25), and nulls without a pipeline.

The path is the mute test's (tests/integration/test_mute_far_end.py): the simulated unit (real
firmware) → the daemon → baresip, whose `alsa` module reaches a private PulseAudio server; offhook's
pipeline (`Realtime`) sits between the headset microphone and the softphone. The customer's
baresip plays bursts of tone (talk) with pauses; the agent's voice is played into the room. The
daemon tells the pipeline connect/end over the control channel and stores the figures it returns.
The second call comes after the pipeline stopped: its analytics are NULL, not zeros.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from offhook import config
from offhook.audio.control import AudioChannel
from offhook.audio.pulse import MIC_SINK, MIC_SOURCE, PulseTestServer, alsa_config, default_pcms
from offhook.audio.realtime import Realtime, RealtimeConfig
from offhook.daemon.service import Daemon
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder
from offhook.sim.unit import SimulatedUnit
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from offhook.softphone.base import EventKind

pytest.importorskip("pyaudio")
pytestmark = pytest.mark.skipif(
    shutil.which("pulseaudio") is None or not Path("/usr/lib/baresip/modules/alsa.so").exists(),
    reason="needs pulseaudio and baresip's alsa module (make test installs both)",
)
RATE = 48000
TALK_S = 8.0


def bursts(rate: int, seconds: float, freq: float, on_s: float, off_s: float, level: float) -> np.ndarray:
    """Speech-like talk: 400 ms syllables with 100 ms gaps for ``on_s``, then ``off_s`` of silence."""
    t = np.arange(int(rate * seconds)) / rate
    voice = level * (np.sin(2 * np.pi * freq * t) + 0.5 * np.sin(2 * np.pi * 2.3 * freq * t)) / 1.5
    syllable = (t % 0.5) < 0.4
    turn = (t % (on_s + off_s)) < on_s
    return voice * (syllable & turn)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


# Out of `make test` until fixed: on a loaded machine the agent's tone bursts come out below the
# 0.3 s of talk the test asks (0.0 and 0.22 s seen), the pipeline dropping late frames.
@pytest.mark.slow
def test_a_calls_record_carries_its_analytics_and_nulls_without_the_pipeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = PulseTestServer(
        sinks=("room", "offhook_far", MIC_SINK),
        sources={"headset_mic": "room.monitor", MIC_SOURCE: f"{MIC_SINK}.monitor"},
    ).start()
    for key in ("PULSE_RUNTIME_PATH", "PULSE_STATE_PATH", "PULSE_SERVER", "PULSE_COOKIE", "HOME"):
        monkeypatch.setenv(key, server.env[key])
    alsa = tmp_path / "alsa.conf"
    pcms = {**default_pcms("headset_mic", "room"), "softphone_mic": MIC_SOURCE, "softphone_speaker": "offhook_far"}
    alsa.write_text(alsa_config(pcms))
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa))
    control = tmp_path / "audio.sock"
    engine = Realtime(
        RealtimeConfig(mic_device="headset_mic", speaker_device="room", gate=False, setup_devices=False,
                       control_socket=control, tail_ms=64, rt_priority=0)
    )  # fmt: skip
    engine.start()
    # The customer talks 2 s, pauses 2 s; the agent talks 2 s in 4 s, a second later.
    customer_voice = write_wav(tmp_path / "customer.wav", bursts(8000, 120, 440, 2.0, 2.0, 0.3), 8000)
    agent_voice = bursts(RATE, 120, 300, 2.0, 2.0, 0.3)
    agent_voice = np.concatenate((np.zeros(RATE), agent_voice))
    recorder = CallRecorder(tmp_path / "metrics.sqlite3")
    agent = customer = voice = None
    try:
        env = dict(os.environ)
        agent = BaresipInstance(
            "agent", tmp_path, audio_source="alsa,softphone_mic", audio_player="alsa,softphone_speaker",
            extra_modules=("alsa.so",), env=env,
        ).start()  # fmt: skip
        customer = BaresipInstance("customer", tmp_path, microphone=customer_voice).start()
        voice = subprocess.Popen(  # the agent talking, into the room the headset microphone hears
            ["pacat", "--playback", "--rate=48000", "--channels=1", "--format=s16le", "--raw", "--device=room"],
            stdin=subprocess.PIPE, env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert voice.stdin is not None
        voice.stdin.write((agent_voice * 32767).astype("<i2").tobytes())
        voice.stdin.close()

        async def calls() -> tuple[str, str]:
            unit = SimulatedUnit("0ff0514d000000a2", tmp_path / "flash")
            await unit.start()
            cfg = config.validate(
                {
                    "unit": {"port": str(unit.port_link)},
                    "softphone": {"baresip_ctrl": f"127.0.0.1:{agent.ctrl_port}"},
                    "timers": {"wrap_up_s": 0},
                }
            )
            channel = AudioChannel(tmp_path / "daemon.sock", control)
            daemon = Daemon(
                cfg, BaresipAdapter(port=agent.ctrl_port), tmp_path / "state.json",
                recorder=MetricsSink(recorder, agent="ann", tz="UTC"), audio_channel=channel,
            )  # fmt: skip
            seen: list[dict] = []
            daemon.listeners.append(lambda message: seen.append(message) if message["event"] == "analytics" else None)
            running = asyncio.create_task(daemon.run())
            caller = BaresipAdapter(port=customer.ctrl_port)
            await caller.start()
            await asyncio.wait_for(caller.connected.wait(), 5)
            await asyncio.wait_for(daemon.unit_connected.wait(), 10)

            async def one_call() -> str:
                await caller.command("dial", agent.uri)
                while daemon.desk.ringing is None:
                    await asyncio.sleep(0.02)
                call_id = daemon.desk.ringing.call_id
                await unit.press("hook")
                while (await asyncio.wait_for(caller.events.get(), 5)).kind is not EventKind.ESTABLISHED:
                    pass
                await asyncio.sleep(TALK_S)
                await caller.hangup(next(iter(caller.calls)))
                while daemon.desk.calls:
                    await asyncio.sleep(0.05)
                return call_id

            metered = await one_call()
            for _ in range(100):  # the figures come back over the channel
                if seen:
                    break
                await asyncio.sleep(0.05)
            assert [m["call"] for m in seen] == [metered]  # the panel hears them too
            engine.stop()  # the pipeline is not running for the next call
            await asyncio.sleep(0.5)
            unmetered = await one_call()
            await asyncio.sleep(1.0)
            assert len(seen) == 1
            await caller.stop()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            channel.close()
            await unit.stop()
            return metered, unmetered

        metered, unmetered = asyncio.run(asyncio.wait_for(calls(), 90))
    finally:
        if voice is not None:
            voice.kill()
        for phone in (agent, customer):
            if phone is not None:
                phone.stop()
        engine.stop()
        server.stop()
    rows = dict(recorder.conn.execute("SELECT call_id, analytics FROM calls").fetchall())
    recorder.close()
    assert rows[unmetered] is None  # no pipeline: null, never zeros
    figures = json.loads(rows[metered])
    assert figures["connected_s"] == pytest.approx(TALK_S, abs=1.5)
    # Both sides heard (the agent, in a room with the speaker at full echo, partly under the echo guard).
    assert figures["customer_talk_s"] > 1.0 and figures["agent_talk_s"] > 0.3, figures
    assert 0.0 < figures["agent_share"] < 1.0 and figures["holds"] == 0
    assert figures["quality"]["noise_floor_dbfs"] is not None
