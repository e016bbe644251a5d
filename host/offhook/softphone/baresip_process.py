"""Run headless baresip instances on 127.0.0.1 (demo lines for `make run`, and tests).

Each instance gets its own config directory, SIP port, RTP port range and ctrl_tcp
port, plays a WAV file as its microphone (aufile) and discards what it hears
(aubridge). Facts behind these settings (baresip 1.0.0 on Debian bookworm): TLS
takes SIP port + 1, `net_interface` must be an address, the call hangs up when the
aufile source ends (so the file is long), and stdio is left out without a terminal.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from offhook.procutil import child_preexec

BARESIP = "baresip"
MICROPHONE_SECONDS = 20 * 60  # a call ends when its source file ends


class BaresipMissing(RuntimeError):
    pass


def write_microphone_wav(path: Path, seconds: int = MICROPHONE_SECONDS) -> Path:
    """A quiet 8 kHz mono voice-band signal: long enough that calls never end by themselves."""
    if path.exists() and path.stat().st_size > seconds * 16000 * 0.99:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    period = [int(800 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(8000)]
    second = struct.pack("<8000h", *period)
    tmp = path.with_suffix(".tmp")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        for _ in range(seconds):
            wav.writeframes(second)
    tmp.replace(path)
    return path


def free_port_pair() -> int:
    """An even port P with P and P+1 free on 127.0.0.1 (baresip binds TLS on P+1)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1] & ~1
        if port > 60000:
            continue
        try:
            for candidate in (port, port + 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class BaresipInstance:
    """One baresip user agent, e.g. ``BaresipInstance("agent", workdir)``; ``start()`` then ``uri``."""

    user: str
    workdir: Path
    microphone: Path | None = None
    sip_port: int = 0
    ctrl_port: int = 0
    rtp_first: int = 0
    # Real audio instead of files: e.g. audio_source "alsa,softphone_mic" with ALSA's pulse plugin.
    audio_source: str = ""
    audio_player: str = ""
    extra_modules: tuple[str, ...] = ()  # e.g. ("alsa.so", "sndfile.so")
    extra_config: tuple[str, ...] = ()  # e.g. ("snd_path /tmp/calls",)
    env: dict[str, str] | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    @property
    def config_dir(self) -> Path:
        return self.workdir / f"baresip-{self.user}"

    @property
    def log_path(self) -> Path:
        return self.config_dir / "baresip.log"

    def write_config(self) -> None:
        if shutil.which(BARESIP) is None:
            raise BaresipMissing("baresip not found: `make run` / `make test` install baresip-core")
        self.sip_port = self.sip_port or free_port_pair()
        self.ctrl_port = self.ctrl_port or free_port()
        self.rtp_first = self.rtp_first or 20000 + (self.sip_port % 2000) * 10
        microphone = self.microphone or write_microphone_wav(self.workdir / "microphone-8k.wav")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(
            "\n".join(
                [
                    "poll_method epoll",
                    f"sip_listen 127.0.0.1:{self.sip_port}",
                    "net_interface 127.0.0.1",
                    f"rtp_ports {self.rtp_first}-{self.rtp_first + 9}",
                    "call_max_calls 4",
                    f"audio_source {self.audio_source or f'aufile,{microphone}'}",
                    f"audio_player {self.audio_player or f'aubridge,{self.user}-out'}",
                    f"audio_alert aubridge,{self.user}-alert",
                    "module_path /usr/lib/baresip/modules",
                    "module g711.so",
                    "module aufile.so",
                    "module aubridge.so",
                    *(f"module {name}" for name in self.extra_modules),
                    "module_tmp uuid.so",
                    "module_tmp account.so",
                    "module_app menu.so",
                    "module_app ctrl_tcp.so",
                    f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
                    *self.extra_config,
                    "",
                ]
            )
        )
        (self.config_dir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1:{self.sip_port}>;regint=0;answermode=manual;audio_codecs=pcmu\n"
        )

    def start(self, timeout: float = 10.0, attempts: int = 3) -> BaresipInstance:
        """Start baresip; ports picked here can be taken by someone else before baresip binds
        them, so a start that does not end up listening on *its own* socket is retried."""
        fixed_ports = bool(self.sip_port and self.ctrl_port)
        for attempt in range(attempts):
            if attempt and not fixed_ports:
                self.sip_port = self.ctrl_port = self.rtp_first = 0
            try:
                return self._start_once(timeout)
            except (RuntimeError, TimeoutError):
                self.kill()
                if attempt == attempts - 1 or fixed_ports:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> BaresipInstance:
        self.write_config()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [BARESIP, "-f", str(self.config_dir)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it cleanly
            preexec_fn=child_preexec(),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"baresip {self.user} exited: {self.log_path.read_text()[-2000:]}")
            if _listening(self.ctrl_port, self.process.pid):
                return self
            time.sleep(0.01)
        raise TimeoutError(f"baresip {self.user} did not open ctrl_tcp on {self.ctrl_port}")

    def stop(self, timeout: float = 3.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _listening(port: int, pid: int) -> bool:
    """Whether process ``pid`` listens on 127.0.0.1:port, found without connecting to it.

    A probe connection would be wrong: ctrl_tcp serves one client and a new connection
    silently replaces the old one. And the listener must be baresip's own socket: another
    process may have taken the port first.
    """
    target = f"0100007F:{port:04X}"
    try:
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:  # not Linux: fall back to a connect probe (before anyone else connects)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False
    inodes = {fields[9] for fields in (line.split() for line in table) if fields[1] == target and fields[3] == "0A"}
    if not inodes:
        return False
    try:
        owned = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    return any(f"socket:[{inode}]" in owned for inode in inodes)
