"""The recording's sidecar: call id, agent, times, paused spans and how the recording ended.

Plain JSON beside the encrypted audio: it holds no audio and no customer number, and `list` and
retention must read it without the quality team's key. Written whole to a temporary file and
renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = 1
SUFFIX = ".json"
AUDIO_SUFFIX = ".ogg.age"
# status: recording (in progress, or the daemon stopped without closing it: a crash), complete,
# stopped (a write failed, e.g. a full disk: the audio up to then is in the file and decrypts).
STATUSES = ("recording", "complete", "stopped")


class MetaError(ValueError):
    """A sidecar that is not one of ours; the message names the file."""


@dataclass
class Meta:
    call_id: str
    agent: str
    started: float  # wall clock, s since the epoch
    samplerate: int
    ended: float | None = None
    duration_s: float = 0.0  # audio in the file (s), pauses included as silence
    paused: list[list[float]] = field(default_factory=list)  # [start_s, end_s] from the file's start
    status: str = "recording"
    reason: str = ""  # why a recording stopped early
    recipient: str = ""  # the age public key the audio is encrypted to
    audio: str = ""  # the encrypted file's name, beside this one
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write(path: Path, meta: Meta) -> None:
    """Atomically replace ``path`` with ``meta`` (fsynced: it is the record of a call)."""
    tmp = path.with_name(path.name + ".tmp")
    data = (json.dumps(meta.to_json(), indent=1) + "\n").encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read(path: Path) -> Meta:
    try:
        raw = json.loads(path.read_bytes()[:1_000_000])
    except (OSError, ValueError) as exc:
        raise MetaError(f"{path}: not a readable recording sidecar ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise MetaError(f"{path}: not a recording sidecar (format {FORMAT})")
    try:
        meta = Meta(**{k: raw[k] for k in Meta.__dataclass_fields__ if k in raw})
    except TypeError as exc:
        raise MetaError(f"{path}: incomplete recording sidecar ({exc})") from None
    if meta.status not in STATUSES or not isinstance(meta.started, (int, float)) or not isinstance(meta.paused, list):
        raise MetaError(f"{path}: recording sidecar with bad fields")
    if not isinstance(meta.audio, str) or "/" in meta.audio or not meta.audio.endswith(AUDIO_SUFFIX):
        raise MetaError(f"{path}: recording sidecar names no audio file beside it")
    return meta
