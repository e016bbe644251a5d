"""API credentials: the per-user token, paired web origins' tokens, panel tokens.

The user token sits in a 0600 file in the user's runtime dir: any program the agent
runs can read it, a web page cannot. Web origins get their own token by pairing
(approved on the desk unit); only its SHA-256 is stored, so the file reveals no
usable secret, and revoking an origin deletes its entry.

The agent panel gets a one-time token (in memory, a minute, one connection), then a
resume token with every welcome: an HMAC-SHA256, keyed with the user token, over a
purpose string, the panel's origin and the issue time. The daemon stores nothing for
it, so it survives a daemon restart; it dies with the user token (delete the token
file to end every panel's), after RESUME_TTL_S, and is no use from another origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Literal

import platformdirs

ONE_TIME_TTL_S = 60.0
RESUME_TTL_S = 12 * 3600  # a panel's reconnects get a fresh one: only a panel away this long must reopen
RESUME_CLOCK_SKEW_S = 300  # a resume token issued later than now + this is refused (wall clock stepped back)
RESUME_PURPOSE = "offhook agent panel resume token v1"  # what the MAC is for: no other HMAC of the key matches
_RESUME = re.compile(r"resume1\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")  # issue time (s), base64url HMAC-SHA256

ResumeCheck = Literal["valid", "not a resume token", "invalid", "expired"]

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

    def resume_token(self, origin: str, now: float | None = None) -> str:
        """A resume token for the panel page at ``origin``, issued ``now`` (wall clock, seconds).

        Raises OSError when the user token cannot be read or written.
        """
        issued = int(time.time() if now is None else now)
        return f"resume1.{issued}.{self._resume_mac(origin, issued)}"

    def check_resume(self, origin: str, token: str, now: float | None = None) -> ResumeCheck:
        """Whether ``token`` is a resume token this user's daemon issued to ``origin``, in its lifetime.

        "not a resume token": not shaped like one (it may be a one-time token); "invalid": forged,
        tampered, for another origin, made with an earlier user token, or issued in the future;
        "expired": genuine but older than RESUME_TTL_S. The MAC is compared in constant time and
        before the issue time is looked at, so a forged token never learns whether its time would do.
        """
        match = _RESUME.fullmatch(token)
        if match is None:
            return "not a resume token"
        issued = int(match.group(1))
        try:
            expected = self.resume_token(origin, issued)
        except OSError as exc:
            log.warning("cannot read or write the API token file %s: %s", self.user_token_path, exc.strerror or exc)
            return "invalid"
        if not hmac.compare_digest(expected.encode(), _bytes(token)):
            return "invalid"
        now = time.time() if now is None else now
        if issued > now + RESUME_CLOCK_SKEW_S:
            return "invalid"
        return "valid" if now - issued <= RESUME_TTL_S else "expired"

    def _resume_mac(self, origin: str, issued: int) -> str:
        message = json.dumps([RESUME_PURPOSE, origin, issued]).encode()  # unambiguous fields
        mac = hmac.new(self.user_token().encode(), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")
