"""API credentials: the per-user token, paired web origins' tokens, one-time panel tokens.

The user token sits in a 0600 file in the user's runtime dir: any program the agent
runs can read it, a web page cannot. Web origins get their own token by pairing
(approved on the desk unit); only its SHA-256 is stored, so the file reveals no
usable secret, and revoking an origin deletes its entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from pathlib import Path

import platformdirs

ONE_TIME_TTL_S = 60.0

log = logging.getLogger(__name__)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _bytes(token: str) -> bytes:
    # A client's token may hold a lone surrogate (JSON "\udcff"): it must not match, not raise.
    return token.encode("utf-8", "surrogatepass")


def _digest(token: str) -> str:
    return hashlib.sha256(_bytes(token)).hexdigest()


class TokenStore:
    def __init__(self, runtime_dir: Path | None = None, config_dir: Path | None = None) -> None:
        runtime_dir = runtime_dir or Path(platformdirs.user_runtime_dir("offhook"))
        config_dir = config_dir or Path(platformdirs.user_config_dir("offhook"))
        self.user_token_path = runtime_dir / "api-token"
        self.origins_path = config_dir / "paired-origins.json"
        self._one_time: dict[str, float] = {}

    def user_token(self) -> str:
        """The per-user token, created on first use (file mode 0600)."""
        try:
            token = self.user_token_path.read_text(encoding="ascii").strip()
            if len(token) >= 32:
                return token
        except (FileNotFoundError, ValueError):  # none yet, or not one we wrote: write a fresh one
            pass
        token = secrets.token_urlsafe(32)
        _write_private(self.user_token_path, token + "\n")
        return token

    def check_user(self, token: str) -> bool:
        try:
            expected = self.user_token()
        except OSError as exc:  # e.g. the runtime dir went away or became read-only under us
            log.warning("cannot read or write the API token file %s: %s", self.user_token_path, exc.strerror or exc)
            return False
        return hmac.compare_digest(_bytes(token), expected.encode())

    def paired(self) -> dict[str, dict[str, object]]:
        try:
            return self._read_origins()
        except OSError as exc:  # unreadable: no origin is paired until it is fixed
            log.warning("cannot read %s: %s", self.origins_path, exc.strerror or exc)
            return {}

    def _read_origins(self) -> dict[str, dict[str, object]]:
        """Raises OSError when unreadable, so a new pairing never overwrites entries it could not read."""
        try:
            data = json.loads(self.origins_path.read_text())
            return data if isinstance(data, dict) else {}
        except (FileNotFoundError, ValueError):
            return {}

    def pair(self, origin: str, name: str) -> str:
        """A new token for ``origin`` (replacing any earlier one); only its hash is kept."""
        token = secrets.token_urlsafe(32)
        origins = self._read_origins()
        origins[origin] = {"sha256": _digest(token), "name": name[:80], "paired_at": int(time.time())}
        _write_private(self.origins_path, json.dumps(origins, indent=1))
        return token

    def revoke(self, origin: str) -> bool:
        origins = self._read_origins()
        if origins.pop(origin, None) is None:
            return False
        _write_private(self.origins_path, json.dumps(origins, indent=1))
        return True

    def check_origin(self, origin: str, token: str) -> bool:
        entry = self.paired().get(origin)
        return isinstance(entry, dict) and hmac.compare_digest(str(entry.get("sha256", "")), _digest(token))

    def one_time(self) -> str:
        """A single-use token for the agent panel URL (valid for a minute)."""
        token = secrets.token_urlsafe(24)
        self._one_time[_digest(token)] = time.monotonic() + ONE_TIME_TTL_S
        return token

    def redeem_one_time(self, token: str) -> bool:
        expires = self._one_time.pop(_digest(token), None)
        return expires is not None and time.monotonic() < expires
