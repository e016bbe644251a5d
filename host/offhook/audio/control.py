"""The real-time pipeline's control socket: how the daemon mutes offhook's audio path.

Kept apart from realtime.py so the daemon can mute without importing numpy, scipy and
the echo canceller (which would triple its memory).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path


def control_socket_path() -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return base / "offhook-audio.sock"


def request_mute(muted: bool, path: Path | None = None) -> None:
    """For the daemon: tell a running `offhook audio run` to mute or un-mute (datagram)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"mute" if muted else b"unmute", str(path or control_socket_path()))
