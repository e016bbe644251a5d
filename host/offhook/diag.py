"""`offhook diag`: a support bundle IT can send without leaking anything.

The bundle (a .tar.gz) holds versions, the effective config, the daemon's saved state,
attached units, paired web origins (names only) and recent logs. Before anything is
written, every secret known to this PC (API token, paired-origin token hashes, the
metrics salt) and everything shaped like one (long random tokens, ``token=``,
passphrases, private keys) is replaced, and customer numbers (the user part of SIP
URIs, callers' fields, phone numbers written as such) are masked. Timestamps, addresses, unit
serials, versions and call ids stay: support has to read the logs.
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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import platformdirs

from offhook import __version__, config
from offhook.api.tokens import TokenStore

REDACTED = "«redacted»"
NUMBER = "«number»"
MAX_LOG_BYTES = 2 * 1024 * 1024

# What support needs stays readable: timestamps, loopback addresses and ports, unit serials, versions,
# call ids. Only secrets and customer numbers go; everything here is matched on one line at a time.
_VALUE = r"""("[^"\n]*"|'[^'\n]*'|[^"'\s,;}&]+)"""  # a quoted value whole (spaces and all), or up to a delimiter
_SECRET_FIELD = re.compile(
    r"""(?i)((?<![\w-])["']?[\w-]*(?:token|passphrase|password|passwd|secret|salt|sha256|api[_-]?key|private[_-]?key)"""
    r"""["']?[ \t]*[:=][ \t]*)""" + _VALUE
)
_SECRETS = (
    # Private keys (PEM blocks, whatever their kind).
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), REDACTED),
    # URL fragments and queries carrying tokens (the panel's one-time token), HTTP credentials.
    (re.compile(r"([#?&]token=)[^&\s\"';]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)[ \t]+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
)
_RANDOM = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{32,}(?![\w-])")  # urlsafe tokens, hex digests
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_URIS = (
    # The user part of SIP URIs (sip:+4930123456@pbx, sip:alice@pbx) and whole tel: URIs.
    (re.compile(r"(?i)\b(sips?:)[^@\s\"'<>;,]+@"), r"\1" + NUMBER + "@"),
    (re.compile(r"(?i)\btel:[^\s\"'<>;,]+"), "tel:" + NUMBER),
)
# A caller's or callee's field, whatever its form ("peer": "4930123456"), when it holds a number or address.
_NUMBER_FIELD = re.compile(
    r"""(?i)((?<![\w-])["']?(?:peer|peeruri|caller|callee|number|phone|supervisor|to|from)["']?[ \t]*[:=][ \t]*)"""
    + _VALUE
)
_ADDRESS_LIKE = re.compile(r"@|(?:\d\D*){3}")  # "frame number: 17" stays
# Phone numbers in running text: international (+49 30 1234567) or national with a trunk 0
# ((030) 123-4567). Not timestamps (colons), addresses and versions (dots after a digit), serials (letters).
_PHONE = re.compile(r"(?<![\w+.:/-])(?:\+|\(?0)\d[\d \-()]{4,}\d(?![\w.:])")


def _masked(mask: str, only: re.Pattern[str] | None = None) -> Callable[[re.Match[str]], str]:
    """Replace a field's value (if ``only`` finds something in it), keeping its quotes; a value
    already masked (a SIP URI) keeps its host."""

    def replace(match: re.Match[str]) -> str:
        key, value = match.group(1), match.group(2)
        if REDACTED in value or NUMBER in value or (only is not None and not only.search(value)):
            return match.group()
        quote = value[0] if value[0] in "\"'" else ""
        return f"{key}{quote}{mask}{quote}"

    return replace


def _phone(match: re.Match[str]) -> str:
    digits = sum(ch.isdigit() for ch in match.group())
    return NUMBER if 7 <= digits <= 15 else match.group()


def _random(match: re.Match[str]) -> str:
    text = match.group()
    random_looking = any(ch.isdigit() for ch in text) or (text.lower() != text and text.upper() != text)
    return REDACTED if random_looking and not _UUID.fullmatch(text) else text


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret, secret-shaped string and customer number replaced."""
    for secret in sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    text = _SECRET_FIELD.sub(_masked(REDACTED), text)
    text = _RANDOM.sub(_random, text)
    for pattern, replacement in _URIS:
        text = pattern.sub(replacement, text)
    text = _NUMBER_FIELD.sub(_masked(NUMBER, _ADDRESS_LIKE), text)
    return _PHONE.sub(_phone, text)


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
        f"Secrets, tokens and customer numbers were replaced by {REDACTED} / {NUMBER}.\n"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    try:
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
    except OSError:
        tmp.unlink(missing_ok=True)  # no half-written bundle left behind
        raise
    return sorted(files)
