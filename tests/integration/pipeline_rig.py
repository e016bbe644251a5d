"""The real audio path's set-up shared by the tests that put a call through it: a private PulseAudio
where the headset's microphone hears the "room" sink, and the softphone's ALSA devices go through
offhook's own sink and source (docs/audio.md), with this test's environment pointed at both."""

from __future__ import annotations

from pathlib import Path

import pytest

from offhook.audio.pulse import MIC_SINK, MIC_SOURCE, PulseTestServer, alsa_config, default_pcms

PULSE_ENV = ("PULSE_RUNTIME_PATH", "PULSE_STATE_PATH", "PULSE_SERVER", "PULSE_COOKIE", "HOME")


def pulse_for_softphone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, speaker: str = "room", extra_sinks: tuple[str, ...] = ()
) -> PulseTestServer:
    """Started; the caller stops it. ``speaker``: the sink the agent hears the customer on ("room":
    heard by the microphone, an echo to cancel; one of ``extra_sinks``: a headset's earpiece)."""
    server = PulseTestServer(
        sinks=("room", *extra_sinks, "offhook_far", MIC_SINK),
        sources={"headset_mic": "room.monitor", MIC_SOURCE: f"{MIC_SINK}.monitor"},
    ).start()
    for key in PULSE_ENV:
        monkeypatch.setenv(key, server.env[key])
    alsa = tmp_path / "alsa.conf"
    pcms = {**default_pcms("headset_mic", speaker), "softphone_mic": MIC_SOURCE, "softphone_speaker": "offhook_far"}
    alsa.write_text(alsa_config(pcms))
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(alsa))
    return server
