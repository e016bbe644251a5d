"""`offhook diag`: a support bundle IT can send without leaking anything.

The bundle (a .tar.gz) holds versions, the effective config, the daemon's saved state,
attached units, paired web origins (names only) and recent logs. Before anything is
written, every secret known to this PC (API token, paired-origin token hashes, the
metrics salt) and everything shaped like one (long random tokens, ``token=``,
passphrases, private keys) is replaced, and customer numbers (the user part of SIP
URIs, phone-number-like digit runs) are masked.
"""

from __future__ import annotations

import io
import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import platformdirs

from offhook import __version__, config
from offhook.api.tokens import TokenStore

REDACTED = "«redacted»"
MAX_LOG_BYTES = 2 * 1024 * 1024
_PATTERNS = (
    # Private keys and certificates' key blocks.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), REDACTED),
    # key=value / "key": "value" for secret-looking keys.
    (
        re.compile(r'(?i)("?(?:token|passphrase|password|secret|salt|sha256)"?\s*[:=]\s*"?)([^"\s,}]+)'),
        r"\1" + REDACTED,
    ),
    # URL fragments and queries carrying tokens (the panel's one-time token).
    (re.compile(r"(#|[?&])token=[^&\s\"']+"), r"\1token=" + REDACTED),
    # Long random strings: urlsafe tokens, hex digests.
    (re.compile(r"\b[A-Za-z0-9_-]{32,}\b"), REDACTED),
    # Customer numbers: the user part of SIP URIs, and phone-number-like digit runs.
    (re.compile(r"(sips?:)[^@\s\"']+@"), r"\1«number»@"),
    (re.compile(r"\+?\d[\d\s().-]{6,}\d"), "«number»"),
)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret and secret- or number-shaped string replaced."""
    for secret in sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def known_secrets(tokens: TokenStore, data_dir: Path | None = None) -> list[str]:
    secrets = []
    if tokens.user_token_path.exists():
        secrets.append(tokens.user_token_path.read_text().strip())
    for entry in tokens.paired().values():
        if isinstance(entry, dict):
            secrets.append(str(entry.get("sha256", "")))
    data_dir = data_dir or Path(platformdirs.user_data_dir("offhook"))
    for salt in data_dir.glob("*salt*"):
        try:
            secrets.append(salt.read_bytes().hex())
            secrets.append(salt.read_text(errors="ignore").strip())
        except OSError:
            pass
    return secrets


def _command_version(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "unknown"


def collect(config_path: Path | None, logs: list[Path]) -> dict[str, str]:
    """The bundle's files, name → text, before scrubbing."""
    from offhook.transport.discovery import candidates

    files: dict[str, str] = {}
    versions = {
        "offhook": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "micropython_target": "1.27",
        "baresip": _command_version("baresip", "-h"),
        "node": _command_version("node", "--version"),
    }
    files["versions.json"] = json.dumps(versions, indent=1)
    try:
        effective: dict[str, Any] = config.load(config_path)
        files["config.json"] = json.dumps(effective, indent=1)
    except config.ConfigError as exc:
        files["config.json"] = json.dumps({"error": str(exc)})
    state = Path(platformdirs.user_state_dir("offhook")) / "daemon-state.json"
    if state.exists():
        files["daemon-state.json"] = state.read_text(errors="replace")
    files["units.json"] = json.dumps([c.__dict__ for c in candidates()], indent=1)
    tokens = TokenStore()
    files["paired-origins.json"] = json.dumps(
        {origin: {"name": e.get("name"), "paired_at": e.get("paired_at")} for origin, e in tokens.paired().items()},
        indent=1,
    )
    for log in logs:
        data = log.read_bytes()[-MAX_LOG_BYTES:]
        files[f"logs/{log.name}"] = data.decode("utf-8", "replace")
    return files


def write_bundle(out: Path, config_path: Path | None = None, logs: list[Path] | None = None) -> list[str]:
    """Write the scrubbed bundle to ``out``; returns the names inside it."""
    tokens = TokenStore()
    secrets = known_secrets(tokens)
    files = {name: scrub(text, secrets) for name, text in collect(config_path, logs or []).items()}
    written = time.strftime("%Y-%m-%d %H:%M:%S %z")
    files["README.txt"] = (
        f"offhook support bundle, written {written}.\n"
        f"Secrets, tokens and customer numbers were replaced by {REDACTED} / «number».\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as bundle:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"offhook-diag/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o600
            bundle.addfile(info, io.BytesIO(data))
    tmp.chmod(0o600)
    tmp.replace(out)
    return sorted(files)
