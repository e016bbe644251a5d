"""A real call recorded through offhook's pipeline (issue 26): both channels, the pause silent and listed.

The analytics test's path (tests/integration/test_analytics_pipeline.py): the simulated unit → the
daemon → baresip on a private PulseAudio server, offhook's pipeline between the headset and the
softphone, now with `[recording]` on. The agent pauses and resumes the recording through the desk
action (as the unit's long mute press does); the daemon's desk follows the recorder's answers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from offhook import config
from offhook.actions import Action
from offhook.audio.control import AudioChannel
from offhook.audio.pulse import MIC_SINK, MIC_SOURCE, PulseTestServer, alsa_config, default_pcms
from offhook.audio.realtime import Realtime, RealtimeConfig, RecordingConfig
from offhook.daemon.service import Daemon
from offhook.recording import meta as M
from offhook.recording import store
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


PAUSE_AT_S = 4.0
PAUSE_S = 2.0
AFTER_S = 4.0


def test_a_real_call_is_recorded_with_its_pause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyrage
    import soundfile as sf

    identity = pyrage.x25519.Identity.generate()
    key = tmp_path / "quality.key"
    key.write_text(f"{identity}\n")
    key.chmod(0o600)
    recipient = str(identity.to_public())
    rec_dir = tmp_path / "rec"
    server = PulseTestServer(
        sinks=("room", "offhook_far", MIC_SINK),
        sources={"headset_mic": "room.monitor", MIC_SOURCE: f"{MIC_SINK}.monitor"},
    ).start()
    for k in ("PULSE_RUNTIME_PATH", "PULSE_STATE_PATH", "PULSE_SERVER", "PULSE_COOKIE", "HOME"):
        monkeypatch.setenv(k, server.env[k])
    alsa = tmp_path / "alsa.conf"
    pcms = {**default_pcms("headset_mic", "room"), "softphone_mic": MIC_SOURCE, "softphone_speaker": "offhook_far"}
    alsa.write_text(alsa_config(pcms))
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa))
    control = tmp_path / "audio.sock"
    engine = Realtime(
        RealtimeConfig(mic_device="headset_mic", speaker_device="room", gate=False, setup_devices=False,
                       control_socket=control, tail_ms=64, rt_priority=0,
                       recording=RecordingConfig(rec_dir, recipient, "ann"))
    )  # fmt: skip
    engine.start()
    customer_voice = write_wav(tmp_path / "customer.wav", bursts(8000, 120, 440, 2.0, 1.0, 0.3), 8000)
    agent_voice = np.concatenate((np.zeros(RATE), bursts(RATE, 120, 300, 2.0, 1.0, 0.3)))
    agent = customer = voice = None
    states: list[str] = []
    try:
        env = dict(os.environ)
        agent = BaresipInstance(
            "agent", tmp_path, audio_source="alsa,softphone_mic", audio_player="alsa,softphone_speaker",
            extra_modules=("alsa.so",), env=env,
        ).start()  # fmt: skip
        customer = BaresipInstance("customer", tmp_path, microphone=customer_voice).start()
        voice = subprocess.Popen(
            ["pacat", "--playback", "--rate=48000", "--channels=1", "--format=s16le", "--raw", "--device=room"],
            stdin=subprocess.PIPE, env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert voice.stdin is not None
        voice.stdin.write((agent_voice * 32767).astype("<i2").tobytes())
        voice.stdin.close()

        async def until(predicate: object, timeout: float = 5.0) -> None:
            for _ in range(int(timeout / 0.02)):
                if predicate():  # type: ignore[operator]
                    return
                await asyncio.sleep(0.02)

        async def call() -> None:
            unit = SimulatedUnit("0ff0514d000000a3", tmp_path / "flash")
            await unit.start()
            cfg = config.validate(
                {
                    "unit": {"port": str(unit.port_link)},
                    "softphone": {"baresip_ctrl": f"127.0.0.1:{agent.ctrl_port}"},
                    "timers": {"wrap_up_s": 0},
                    "recording": {"enabled": True, "recipient": recipient, "directory": str(rec_dir)},
                }
            )
            channel = AudioChannel(tmp_path / "daemon.sock", control)
            daemon = Daemon(cfg, BaresipAdapter(port=agent.ctrl_port), tmp_path / "state.json", audio_channel=channel)
            running = asyncio.create_task(daemon.run())
            caller = BaresipAdapter(port=customer.ctrl_port)
            await caller.start()
            await asyncio.wait_for(caller.connected.wait(), 5)
            await asyncio.wait_for(daemon.unit_connected.wait(), 10)
            await caller.command("dial", agent.uri)
            while daemon.desk.ringing is None:
                await asyncio.sleep(0.02)
            await unit.press("hook")
            while (await asyncio.wait_for(caller.events.get(), 5)).kind is not EventKind.ESTABLISHED:
                pass
            await until(lambda: daemon.desk.recording_state == "on")
            states.append(daemon.desk.recording_state)
            await asyncio.sleep(PAUSE_AT_S)
            await daemon.act(Action.TOGGLE_RECORDING_PAUSE.value)
            await until(lambda: daemon.desk.recording_state == "paused")
            states.append(daemon.desk.recording_state)
            await asyncio.sleep(PAUSE_S)
            await daemon.act(Action.TOGGLE_RECORDING_PAUSE.value)
            await until(lambda: daemon.desk.recording_state == "on")
            states.append(daemon.desk.recording_state)
            await asyncio.sleep(AFTER_S)
            await caller.hangup(next(iter(caller.calls)))
            while daemon.desk.calls:
                await asyncio.sleep(0.05)
            await until(lambda: any(rec_dir.glob("*" + M.SUFFIX)) and not engine.recorders._calls, 10)  # type: ignore[union-attr]
            await caller.stop()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            channel.close()
            await unit.stop()

        asyncio.run(asyncio.wait_for(call(), 90))
    finally:
        if voice is not None:
            voice.kill()
        for phone in (agent, customer):
            if phone is not None:
                phone.stop()
        engine.stop()
        server.stop()
    assert states == ["on", "paused", "on"]
    (sidecar,) = rec_dir.glob("*" + M.SUFFIX)
    meta = M.read(sidecar)
    assert meta.status == "complete", meta
    ((start, end),) = meta.paused
    assert end - start == pytest.approx(PAUSE_S, abs=0.5)
    out = tmp_path / "out.ogg"
    store.decrypt(rec_dir / meta.audio, key, out)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == RATE
    assert len(audio) / RATE == pytest.approx(PAUSE_AT_S + PAUSE_S + AFTER_S, abs=1.5)
    a, b = int((start + 0.1) * RATE), int((end - 0.1) * RATE)
    assert np.max(np.abs(audio[a:b])) <= 10 ** (-50 / 20)  # the paused span: silence, both sides
    before = audio[: int(start * RATE)]
    after = audio[int(end * RATE) :]
    for part in (before, after):
        assert np.sqrt(np.mean(part[:, 1] ** 2)) > 0.01  # the customer
        assert np.sqrt(np.mean(part[:, 0] ** 2)) > 0.002  # the agent, after the echo canceller
