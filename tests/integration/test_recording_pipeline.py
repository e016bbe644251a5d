"""A real call recorded through offhook's pipeline (issue 26): speech on both channels, the pause
silent and listed.

The analytics test's path (tests/integration/test_analytics_pipeline.py): the simulated unit → the
daemon → baresip on a private PulseAudio server, offhook's pipeline between the headset and the
softphone, now with `[recording]` on. The customer's baresip plays espeak-ng speech (8 kHz, PCMU);
the agent answers it into the room the headset microphone hears, turn by turn, with the customer's
voice echoing at full level from the same room. The agent pauses and resumes the recording through
the desk action (as the unit's long mute press does); the daemon's desk follows the recorder's
answers. The decrypted file is then held against what was played: STOI at least 0.9 on each
channel (the issue's requirement), outside the paused span, which is silent.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from offhook import config
from offhook.actions import Action
from offhook.audio.control import AudioChannel
from offhook.audio.realtime import Realtime, RealtimeConfig, RecordingConfig
from offhook.daemon.service import Daemon
from offhook.recording import meta as M
from offhook.recording import store
from offhook.recording.writer import PAUSE_GUARD_S, RESUME_GUARD_S
from offhook.sim.unit import SimulatedUnit
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from offhook.softphone.base import EventKind
from tests.bench.audio import scenes
from tests.integration.pipeline_rig import pulse_for_softphone
from tests.recording.speech import aligned_stoi, conversation

RATE = 48000
PAUSE_AT_S = 6.0
PAUSE_S = 2.0
AFTER_S = 6.0
STOI_GOAL = 0.9


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2").tobytes())
    return path


def test_a_real_call_with_speech_is_recorded_intelligibly_with_its_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyrage
    import soundfile as sf

    assert scenes.have_espeak(), "espeak-ng is needed for the speech (make test installs it)"
    identity = pyrage.x25519.Identity.generate()
    key = tmp_path / "quality.key"
    key.write_text(f"{identity}\n")
    key.chmod(0o600)
    recipient = str(identity.to_public())
    rec_dir = tmp_path / "rec"
    # Turn by turn, 16 kHz: the customer's side goes out at 8 kHz (PCMU), the agent's at 48 kHz.
    agent_talk, customer_talk = conversation(seconds=PAUSE_AT_S + PAUSE_S + AFTER_S + 4.0, seed=11)
    customer_8k = np.concatenate((resample_poly(customer_talk, 1, 2), np.zeros(60 * 8000)))
    customer_voice = write_wav(tmp_path / "customer.wav", customer_8k, 8000)
    agent_48k = resample_poly(agent_talk, 3, 1)
    server = pulse_for_softphone(tmp_path, monkeypatch)
    control = tmp_path / "audio.sock"
    engine = Realtime(
        RealtimeConfig(mic_device="headset_mic", speaker_device="room", gate=False, setup_devices=False,
                       control_socket=control, tail_ms=64, rt_priority=0,
                       recording=RecordingConfig(rec_dir, recipient, "ann"))
    )  # fmt: skip
    engine.start()
    agent = customer = voice = None
    states: list[str] = []
    try:
        env = dict(os.environ)
        agent = BaresipInstance(
            "agent", tmp_path, audio_source="alsa,softphone_mic", audio_player="alsa,softphone_speaker",
            extra_modules=("alsa.so",), env=env,
        ).start()  # fmt: skip
        customer = BaresipInstance("customer", tmp_path, microphone=customer_voice).start()

        agent_raw = tmp_path / "agent.raw"
        agent_raw.write_bytes(np.clip(np.round(agent_48k * 32767), -32768, 32767).astype("<i2").tobytes())

        def agent_talks() -> subprocess.Popen:
            # The agent, into the room the headset microphone hears. From a file: pacat reads a pipe
            # only as fast as it plays, so writing to its stdin would block the event loop.
            return subprocess.Popen(
                ["pacat", "--playback", "--rate=48000", "--channels=1", "--format=s16le", "--raw", "--device=room",
                 str(agent_raw)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

        async def until(predicate: object, timeout: float = 5.0) -> None:
            for _ in range(int(timeout / 0.02)):
                if predicate():  # type: ignore[operator]
                    return
                await asyncio.sleep(0.02)

        async def call() -> None:
            nonlocal voice
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
            voice = agent_talks()  # the customer's file starts with the call's media, the agent now
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
            await until(lambda: any(M.read(p).status != "recording" for p in rec_dir.glob("*" + M.SUFFIX)), 10)
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
    stats = engine.snapshot()
    assert states == ["on", "paused", "on"]
    (sidecar,) = rec_dir.glob("*" + M.SUFFIX)
    meta = M.read(sidecar)
    assert meta.status == "complete", meta
    ((start, end),) = meta.paused
    assert end - start == pytest.approx(PAUSE_S, abs=0.5)
    out = tmp_path / "out.ogg"
    store.decrypt(rec_dir / meta.audio, key, out)
    audio, rate = sf.read(out, dtype="float64")
    assert rate == RATE
    assert len(audio) / RATE == pytest.approx(PAUSE_AT_S + PAUSE_S + AFTER_S, abs=1.5)
    a, b = int((start + 0.1) * RATE), int((end - 0.1) * RATE)
    assert np.max(np.abs(audio[a:b])) <= 10 ** (-50 / 20)  # the paused span: silence, both sides
    # Intelligibility against what was played, outside the paused span and its guards (by design
    # silence there); each channel lined up with its source by cross-correlation.
    skip = (start - PAUSE_GUARD_S - 0.02, end + RESUME_GUARD_S + 0.02)
    figures = {}
    for name, channel, played, played_rate in (
        ("agent", audio[:, 0], agent_talk, 16000),
        ("customer", audio[:, 1], customer_8k, 8000),
    ):
        figures[name] = aligned_stoi(played, played_rate, channel, RATE, skip)
    print("recording, " + "; ".join(f"{name}: {figure}" for name, figure in figures.items()) + f"; pipeline {stats}")
    for name, figure in figures.items():
        assert figure.stoi >= STOI_GOAL, (name, figure, stats)
