"""PulseAudio (or pipewire-pulse) plumbing: the virtual devices offhook sits between, and a
private one-process server for tests.

Layout (see docs/audio.md): the softphone plays into the null sink ``offhook_far``; offhook
captures its monitor (the echo reference), plays it to the headset and hands it to the canceller;
the cleaned microphone is played into the null sink ``offhook_mic_sink``, whose monitor is
remapped as the source ``offhook_mic`` that the softphone uses as its microphone. Devices are
reached through ALSA's ``pulse`` plugin (Debian's PortAudio has no PulseAudio host API), with an
ALSA configuration that names exactly these PCMs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from offhook.procutil import child_preexec

RATE = 48000
FAR_SINK = "offhook_far"
MIC_SINK = "offhook_mic_sink"
MIC_SOURCE = "offhook_mic"


class PulseError(RuntimeError):
    """PulseAudio is missing, not running, or refused a command."""


def pactl(*args: str, env: dict[str, str] | None = None) -> str:
    if shutil.which("pactl") is None:
        raise PulseError("pactl not found: install pulseaudio-utils")
    result = subprocess.run(["pactl", *args], capture_output=True, text=True, env=env, timeout=10)
    if result.returncode != 0:
        raise PulseError(f"pactl {' '.join(args)}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


# A null sink that rewinds (to play a stream's new data at once after it ran dry) hands its
# monitor's readers the rewritten stretch a second time: the monitor then delivers more audio
# than time passed (measured: 10-25 % more in a loaded 15 s run) and every reader's alignment
# breaks. No rewinds costs nothing here: nobody listens to these sinks directly.
NO_REWINDS = "norewinds=1"


def virtual_device_commands(rate: int = RATE) -> list[list[str]]:
    """The module loads that create offhook's virtual devices (pactl arguments)."""
    return [
        ["load-module", "module-null-sink", f"sink_name={FAR_SINK}", f"rate={rate}", "channels=1", NO_REWINDS,
         "sink_properties=device.description=offhook-softphone-speaker"],
        ["load-module", "module-null-sink", f"sink_name={MIC_SINK}", f"rate={rate}", "channels=1", NO_REWINDS,
         "sink_properties=device.description=offhook-internal"],
        ["load-module", "module-remap-source", f"source_name={MIC_SOURCE}", f"master={MIC_SINK}.monitor",
         "channels=1", "source_properties=device.description=offhook-microphone"],
    ]  # fmt: skip


def ensure_virtual_devices(env: dict[str, str] | None = None) -> list[str]:
    """Load the virtual devices that are not there yet; returns the module ids loaded."""
    present = pactl("list", "short", "sinks", env=env) + "\n" + pactl("list", "short", "sources", env=env)
    names = {line.split("\t")[1] for line in present.splitlines() if "\t" in line}
    loaded = []
    for command in virtual_device_commands():
        name = next(arg.split("=", 1)[1] for arg in command if arg.startswith(("sink_name=", "source_name=")))
        if name not in names:
            try:
                loaded.append(pactl(*command, env=env))
            except PulseError:
                if NO_REWINDS not in command:
                    raise
                # A server without the argument (pipewire-pulse's own module-null-sink may not
                # take it): the sink still works, its monitor may repeat audio after an underflow.
                loaded.append(pactl(*[arg for arg in command if arg != NO_REWINDS], env=env))
    return loaded


def alsa_config(pcms: dict[str, str]) -> str:
    """An ALSA configuration defining only ``pulse`` PCMs (name -> PulseAudio device).

    A ``default`` PCM is always included: Debian's PortAudio 19.6 asserts in BuildDeviceList when
    no listed PCM is skipped, and it skips ``default`` (PortAudio issue #294).
    """
    lines = ["pcm.default { type pulse }"]
    for name, device in pcms.items():
        lines.append(f'pcm.{name} {{ type pulse device "{device}" }}')
    return "\n".join(lines) + "\n"


def default_pcms(mic: str | None, speaker: str | None) -> dict[str, str]:
    return {
        "offhook_headset_mic": mic or "@DEFAULT_SOURCE@",
        "offhook_headset_speaker": speaker or "@DEFAULT_SINK@",
        "offhook_reference": f"{FAR_SINK}.monitor",
        "offhook_output": MIC_SINK,
    }


@dataclass
class PulseTestServer:
    """A private PulseAudio server (no sound card, one process) for tests and benchmarks."""

    sinks: tuple[str, ...] = ("room",)
    sources: dict[str, str] = field(default_factory=lambda: {"headset_mic": "room.monitor"})
    rate: int = RATE
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="offhook-pulse-")))
    process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PULSE_RUNTIME_PATH=str(self.directory),
            PULSE_STATE_PATH=str(self.directory),
            PULSE_SERVER=f"unix:{self.directory}/native",
            PULSE_COOKIE=str(self.directory / "cookie"),
            HOME=str(self.directory),
        )
        return env

    def start(self) -> PulseTestServer:
        if shutil.which("pulseaudio") is None:
            raise PulseError("pulseaudio not found: install pulseaudio")
        script = [f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.directory}/native"]
        for sink in self.sinks:
            script.append(f"load-module module-null-sink sink_name={sink} rate={self.rate} channels=1 {NO_REWINDS}")
        for name, master in self.sources.items():
            script.append(f"load-module module-remap-source source_name={name} master={master} channels=1")
        script += ["load-module module-always-sink", f"set-default-sink {self.sinks[0]}"]
        if self.sources:
            script.append(f"set-default-source {next(iter(self.sources))}")
        config = self.directory / "server.pa"
        config.write_text("\n".join(script) + "\n")
        self.process = subprocess.Popen(
            ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--system=false", "-n", "-F", str(config),
             "--log-target=file:" + str(self.directory / "server.log")],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=child_preexec(),
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PulseError(f"pulseaudio exited: {(self.directory / 'server.log').read_text()[-500:]}")
            try:
                pactl("info", env=self.env)
                return self
            except PulseError:
                time.sleep(0.1)
        raise PulseError("pulseaudio did not come up within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
