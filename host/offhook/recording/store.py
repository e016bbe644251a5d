"""The recordings directory: list, decrypt (with the quality team's identity) and purge.

Decryption is pyrage's (the reference age implementation in Rust). Nothing is written unless
the whole file decrypted and authenticated, and the output is created, never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offhook.recording import meta as M

DAY_S = 86400.0


class RecordingError(Exception):
    """A one-line reason a recording could not be read, decrypted or removed."""


@dataclass
class Entry:
    meta_path: Path
    meta: M.Meta
    size: int  # of the encrypted audio, bytes; -1 if it is missing

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.meta_path.parent / self.meta.audio),
            "sidecar": str(self.meta_path),
            "bytes": self.size,
            **self.meta.to_json(),
        }


def entries(directory: Path) -> tuple[list[Entry], list[str]]:
    """Every recording in ``directory`` (oldest first), and one line per sidecar that is not one."""
    found: list[Entry] = []
    problems: list[str] = []
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(M.SUFFIX))
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise RecordingError(f"{directory}: cannot list it: {exc.strerror or exc}") from None
    for path in paths:
        try:
            meta = M.read(path)
        except M.MetaError as exc:
            problems.append(str(exc))
            continue
        audio = path.parent / meta.audio
        try:
            size = audio.stat().st_size if meta.audio and "/" not in meta.audio else -1
        except OSError:
            size = -1
        found.append(Entry(path, meta, size))
    found.sort(key=lambda e: e.meta.started)
    return found, problems


def load_identities(path: Path) -> list[Any]:
    """The age X25519 identities in an age key file (``age-keygen`` output; comments allowed)."""
    import pyrage

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordingError(
            f"{path}: cannot read the identity file: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    identities = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise RecordingError(f"{path}: not an age identity file (AGE-SECRET-KEY-1...)") from None
    if not identities:
        raise RecordingError(f"{path}: holds no age identity")
    return identities


def decrypt(source: Path, identity: Path, output: Path, salvage: bool = False) -> tuple[int, bool]:
    """Decrypt ``source`` into a new file ``output``: (the plaintext's size, whether the file was
    complete). Refuses (and writes nothing) on a wrong identity, a corrupt, tampered or truncated
    file; with ``salvage`` a truncated one (a crash) gives the part before the cut that
    authenticates, and only that."""
    import pyrage

    identities = load_identities(identity)
    if output.exists():
        raise RecordingError(f"{output}: exists; not overwritten")
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise RecordingError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    if not data.startswith(b"age-encryption.org/v1\n"):
        raise RecordingError(f"{source}: not an age-encrypted recording")
    complete = True
    try:
        plain = pyrage.decrypt(data, identities)
    except pyrage.DecryptError as exc:
        if "No matching keys" in str(exc):
            raise RecordingError(
                f"{source}: the identity does not match the key it was encrypted to (or its key stanza was altered)"
            ) from None
        if not salvage:
            raise RecordingError(
                f"{source}: corrupt, tampered or truncated: it does not authenticate ({exc}); "
                "a recording cut short by a crash: --salvage"
            ) from None
        plain, complete = _salvage(source, data, identity)
    tmp = output.with_name(f".{output.name}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, plain)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, output)  # fails if output appeared meanwhile: never overwrite
    except OSError as exc:
        raise RecordingError(f"{output}: cannot write it: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return len(plain), complete


def _salvage(source: Path, data: bytes, identity: Path) -> tuple[bytes, bool]:
    from offhook.recording import age

    secrets = [
        age.parse_identity(line)
        for line in identity.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    problem = "no identity"
    for secret in secrets:
        try:
            plain, complete = age.salvage(data, secret)
        except age.SalvageError as exc:
            problem = str(exc)
            continue
        if not plain:
            raise RecordingError(f"{source}: nothing before the cut authenticates; nothing written")
        return plain, complete
    raise RecordingError(f"{source}: cannot salvage: {problem}")


def purge(directory: Path, retention_days: float, now: float | None = None, dry_run: bool = False) -> list[Entry]:
    """Remove recordings (audio and sidecar) started more than ``retention_days`` ago."""
    now = time.time() if now is None else now
    found, _ = entries(directory)
    old = [e for e in found if now - e.meta.started > retention_days * DAY_S]
    if dry_run:
        return old
    for entry in old:
        for path in (entry.meta_path.parent / entry.meta.audio, entry.meta_path):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise RecordingError(f"{path}: cannot remove it: {exc.strerror or exc}") from None
    return old


def purge_due(last: float | None, now: float) -> bool:
    """The daemon applies retention at start and then once a day (wall clock, s)."""
    return last is None or now - last >= DAY_S or now < last
