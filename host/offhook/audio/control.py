"""The real-time pipeline's control socket: how the daemon mutes offhook's audio path.

Kept apart from realtime.py so the daemon can mute without importing numpy, scipy and
the echo canceller (which would triple its memory); the server side lives here too.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path


def control_socket_path() -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return base / "offhook-audio.sock"


def request_mute(muted: bool, path: Path | None = None) -> None:
    """For the daemon: tell a running `offhook audio run` to mute or un-mute (datagram)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"mute" if muted else b"unmute", str(path or control_socket_path()))


class ControlServer:
    """For `offhook audio run`: receives the daemon's mute datagrams on a thread of its own."""

    def __init__(self, path: Path, on_mute: Callable[[bool], None]) -> None:
        path.unlink(missing_ok=True)
        self._sock = sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(0.2)
        self._stop = threading.Event()
        self._on_mute = on_mute
        threading.Thread(target=self._serve, name="offhook-audio-control", daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._sock.recv(64)
            except (TimeoutError, OSError):
                continue
            if message in (b"mute", b"unmute"):
                self._on_mute(message == b"mute")

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
