"""A mute press on the desk unit silences the agent at the far end of a real call.

The whole path is real: the simulated unit (real firmware) → the daemon → baresip, whose
`alsa` module reaches a private PulseAudio server through ALSA's pulse plugin; offhook's
audio pipeline (`Realtime`) sits between the headset microphone and the softphone's
microphone. The agent's voice (a tone) is played into the room; the customer's baresip
records what it receives (`sndfile`). Before the press the customer hears the agent;
after it, silence: offhook's path outputs exact zeros and baresip mutes too, and the
far end receives PCMU's zero level (it decodes to ±2 of 32767, not 0).
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
from offhook.audio.control import request_mute
from offhook.audio.realtime import Realtime, RealtimeConfig
from offhook.daemon.service import Daemon
from offhook.sim.unit import SimulatedUnit
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from offhook.softphone.base import EventKind
from tests.integration.pipeline_rig import pulse_for_softphone

pytest.importorskip("pyaudio")
pytestmark = pytest.mark.skipif(
    shutil.which("pulseaudio") is None or not Path("/usr/lib/baresip/modules/alsa.so").exists(),
    reason="needs pulseaudio and baresip's alsa module (make test installs both)",
)
RATE = 48000
PCMU_ZERO_LEVEL = 8  # |sample| at or below this is the codec's silence


def windows_rms(x: np.ndarray, size: int) -> list[float]:
    return [float(np.sqrt(np.mean(x[i : i + size] ** 2))) for i in range(0, len(x) - size + 1, size)]


def test_mute_press_silences_the_agent_at_the_far_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = pulse_for_softphone(tmp_path, monkeypatch)
    control = tmp_path / "audio.sock"
    engine = Realtime(
        RealtimeConfig(mic_device="headset_mic", speaker_device="room", gate=False, setup_devices=False,
                       control_socket=control, tail_ms=64, rt_priority=0)
    )  # fmt: skip
    engine.start()
    received = tmp_path / "received"
    received.mkdir()
    agent = customer = None
    voice = None
    try:
        env = dict(os.environ)
        agent = BaresipInstance(
            "agent", tmp_path, audio_source="alsa,softphone_mic", audio_player="alsa,softphone_speaker",
            extra_modules=("alsa.so",), env=env,
        ).start()  # fmt: skip
        customer = BaresipInstance(
            "customer", tmp_path, extra_modules=("sndfile.so",), extra_config=(f"snd_path {received}",)
        ).start()
        tone = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(RATE * 30) / RATE) * 32767).astype("<i2")
        voice = subprocess.Popen(  # the agent talking, into the room the headset microphone hears
            ["pacat", "--playback", "--rate=48000", "--channels=1", "--format=s16le", "--raw", "--device=room"],
            stdin=subprocess.PIPE, env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert voice.stdin is not None
        voice.stdin.write(tone.tobytes())
        voice.stdin.close()

        async def call() -> float:
            unit = SimulatedUnit("0ff0514d000000a1", tmp_path / "flash")
            await unit.start()
            cfg = config.validate(
                {"unit": {"port": str(unit.port_link)}, "softphone": {"baresip_ctrl": f"127.0.0.1:{agent.ctrl_port}"}}
            )
            daemon = Daemon(
                cfg, BaresipAdapter(port=agent.ctrl_port), tmp_path / "state.json",
                audio_mute=lambda muted: request_mute(muted, control),
            )  # fmt: skip
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
            await asyncio.sleep(3.0)  # the customer hears the agent
            await unit.press("mute")
            while not (daemon.desk.muted and unit.led_map()["mute"]):  # confirmed, and shown
                await asyncio.sleep(0.02)
            assert engine.chain.mute.muted  # offhook's own path is muted too
            muted_for = 3.0
            await asyncio.sleep(muted_for)
            await caller.hangup(next(iter(caller.calls)))
            await asyncio.sleep(0.5)
            await caller.stop()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await unit.stop()
            return muted_for

        muted_for = asyncio.run(asyncio.wait_for(call(), 60))
    finally:
        if voice is not None:
            voice.kill()
        for phone in (agent, customer):
            if phone is not None:
                phone.stop()
        engine.stop()
        server.stop()
    (dump,) = received.glob("*-dec.wav")  # what the customer received, 8 kHz
    with wave.open(str(dump)) as wav:
        heard = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float64)
    rms = windows_rms(heard, 2000)  # quarter seconds
    assert max(rms) > 1000, rms  # the agent was heard before the press
    silent = heard[-int((muted_for - 1.0) * 8000) :]  # the end of the muted stretch (margin for latency)
    assert np.max(np.abs(silent)) <= PCMU_ZERO_LEVEL, rms
