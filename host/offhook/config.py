"""The daemon's TOML configuration: defaults, validation with errors that name the key.

The file lives in the platform's user config dir (``offhook config path`` prints it).
Every value is checked against the schema below; an unknown key, a wrong type or an
out-of-range value is a ConfigError naming the key, and nothing is applied.
"""

from __future__ import annotations

import copy
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

from offhook.daemon.wiring import SOFTPHONES

APP_NAME = "offhook"
MAX_CONFIG_BYTES = 64 * 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class ConfigError(ValueError):
    """Bad configuration; the message names the file and key."""


@dataclass(frozen=True)
class Setting:
    kind: type | tuple[type, ...]
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    # A value's own rule beyond type and range: returns what is wrong (after the key's name), or None.
    check: Callable[[Any], str | None] | None = None


def _time_zone(value: str) -> str | None:
    # An unknown zone would pass here and then fail every metrics write, so calls went unrecorded.
    if not value:
        return None  # the PC's own zone
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory such as "Europe"
        return f"= {value!r} is not a known IANA time zone (e.g. Europe/Berlin, UTC)"
    return None


def _loopback_address(value: str) -> str | None:
    host, _, port = value.rpartition(":")
    # ASCII digits only: int() also reads other scripts' digits, which no softphone config would.
    if host not in LOOPBACK_HOSTS or not (port.isascii() and port.isdigit()):
        return f"must be a loopback HOST:PORT ({', '.join(LOOPBACK_HOSTS)}), not {value!r}"
    if not 1 <= int(port) <= 65535:
        return f"must be a loopback HOST:PORT: port {int(port)} is not 1..65535"
    return None


def _sip_uri(value: str) -> str | None:
    scheme, _, rest = value.partition(":")
    if value and (scheme not in ("sip", "sips") or not rest or any(c.isspace() for c in rest)):
        return f"must be a sip: URI, not {value!r}"
    return None


def _broker(value: str) -> str | None:
    if not value:
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number, or above 65535, raises here
    except ValueError:
        return f"must be mqtts://HOST:PORT, not {value!r}"
    if parts.scheme not in ("mqtts", "mqtt") or not parts.hostname or parts.path or parts.username is not None:
        return f"must be mqtts://HOST:PORT, not {value!r}"
    if parts.scheme == "mqtt" and parts.hostname not in LOOPBACK_HOSTS:  # credentials never cross a network in clear
        return f"must use TLS (mqtts://) unless the broker is on this PC, not {value!r}"
    return None


def _central_url(value: str) -> str | None:
    if not value:
        return None
    try:
        parts = urlsplit(value)
        _ = parts.port
    except ValueError:
        return f"must be https://HOST[:PORT], not {value!r}"
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/"):
        return f"must be https://HOST[:PORT], not {value!r}"
    if parts.query or parts.fragment or parts.username is not None:
        return f"must be https://HOST[:PORT], not {value!r}"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return f"must use TLS (https://) unless central is on this PC, not {value!r}"
    return None


def _floor_name(value: str) -> str | None:
    # Names become MQTT topic levels and ACL lines: no wildcards, slashes or spaces.
    if value and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", value):
        return f"= {value!r} must be letters, digits, _ . - (at most 64)"
    return None


def _age_recipient(value: str) -> str | None:
    if not value:
        return None
    from offhook.recording.age import RecipientError, parse_recipient  # cryptography: only when set

    try:
        parse_recipient(value)
    except RecipientError as exc:
        return f"is not usable: {exc}"
    return None


def _origins(values: list[str]) -> str | None:
    for origin in values:
        try:
            parts = urlsplit(origin)
            port = parts.port
        except ValueError:  # a port that is not a number or above 65535
            parts, port = None, None
        if (
            parts is None
            or parts.scheme.lower() not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or origin != f"{parts.scheme}://{parts.netloc}"
        ):
            return f"entry {origin!r} must look like https://host[:port]"
        # Browsers send the origin lower-case, without the scheme's default port: anything else never matches.
        scheme = parts.scheme.lower()
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default = {"http": 80, "https": 443}[scheme]
        canonical = f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")
        if origin != canonical:
            return f"entry {origin!r} never matches a browser's Origin: write {canonical!r}"
    return None


SCHEMA: dict[str, dict[str, Setting]] = {
    "agent": {
        "name": Setting(str, "", help="agent name recorded with each call (default: the login name)"),
        "timezone": Setting(str, "", help="IANA time zone for reports (default: the PC's)", check=_time_zone),
    },
    "unit": {
        "serial": Setting(str, "", help="serial number of the unit to use when several are attached"),
        "port": Setting(str, "", help="explicit serial port path (skips discovery)"),
        "transport": Setting(str, "auto", choices=("auto", "serial", "hid")),
    },
    "softphone": {
        "kind": Setting(str, "baresip", choices=tuple(SOFTPHONES)),
        "baresip_ctrl": Setting(
            str, "127.0.0.1:4444", help="baresip ctrl_tcp address (loopback only)", check=_loopback_address
        ),
        "supervisor": Setting(str, "", help="SIP URI the escalate button consults and transfers to", check=_sip_uri),
        "consult_timeout_s": Setting((int, float), 30, 5, 300),
        "hid_softphone": Setting(bool, False, help="a HID softphone (Teams, a browser) also drives the unit"),
    },
    "timers": {
        "wrap_up_s": Setting((int, float), 30, 0, 3600),
        "wrap_up_extend_s": Setting((int, float), 30, 5, 3600),
        "ring_timeout_s": Setting((int, float), 20, 5, 300),
        "hold_reminder_s": Setting((int, float), 120, 10, 3600),
        "mute_confirm_timeout_s": Setting((int, float), 1.0, 0.2, 10),
    },
    "api": {
        "port": Setting(int, 8677, 1024, 65535),
        "allowed_origins": Setting(
            list, [], help="web origins allowed to pair, e.g. https://crm.example.com", check=_origins
        ),
    },
    # The floor (docs/floor.md): empty broker = off, and the daemon works on its own.
    "floor": {
        "broker": Setting(
            str, "", help='the floor\'s MQTT broker, "mqtts://HOST:8883" (empty: no floor)', check=_broker
        ),
        "username": Setting(str, "", help="this desk's broker account (its name on the floor)", check=_floor_name),
        "password_file": Setting(str, "", help="file holding the desk's broker password (mode 0600)"),
        "cert_file": Setting(str, "", help="client certificate (PEM), instead of a password"),
        "key_file": Setting(str, "", help="the client certificate's key (PEM)"),
        "ca_file": Setting(str, "", help="CA certificate that signed the broker's (default: the system's)"),
        "site": Setting(str, "", help="the desk's site (a name: letters, digits, _ . -)", check=_floor_name),
        "team": Setting(str, "", help="the desk's team", check=_floor_name),
        "keepalive_s": Setting(int, 30, 5, 600, help="MQTT keepalive: a dead PC shows offline after 1.5 times this"),
        "central_url": Setting(
            str,
            "",
            help='central\'s HTTPS side, "https://HOST:8443", where firmware bundles of rollouts come from'
            " (empty: this desk takes no rollouts); verified with ca_file",
            check=_central_url,
        ),
    },
    # Call recording (docs/recording.md): off by default; audio is encrypted to the quality team's key.
    "recording": {
        "enabled": Setting(bool, False, help="record each call (stereo Ogg/Opus, age-encrypted)"),
        "directory": Setting(str, "", help="where recordings go (default: the data dir's recordings/)"),
        "retention_days": Setting(int, 90, 1, 3650, help="recordings older than this are purged daily"),
        "recipient": Setting(
            str, "", help="the quality team's age public key (age1...): only they can decrypt", check=_age_recipient
        ),
    },
}


def _check_floor(floor: dict[str, Any], source: str) -> None:
    """The [floor] keys that only make sense together."""
    if not floor["broker"]:
        return
    for key in ("username", "site"):
        if not floor[key]:
            raise ConfigError(f"{source}: floor.{key} is needed with floor.broker")
    if not floor["password_file"] and not floor["cert_file"]:
        raise ConfigError(f"{source}: floor.password_file or floor.cert_file is needed with floor.broker")
    if bool(floor["cert_file"]) != bool(floor["key_file"]):
        raise ConfigError(f"{source}: floor.cert_file and floor.key_file go together")
    for key in ("password_file", "cert_file", "key_file", "ca_file"):
        if floor[key] and not Path(floor[key]).is_file():
            raise ConfigError(f"{source}: floor.{key} {floor[key]!r} is not a file")


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


def defaults() -> dict[str, dict[str, Any]]:
    return {section: {key: copy.copy(s.default) for key, s in keys.items()} for section, keys in SCHEMA.items()}


def validate(raw: dict[str, Any], source: str = "config") -> dict[str, dict[str, Any]]:
    """Defaults overlaid with ``raw``; raises ConfigError naming the first bad key."""
    config = defaults()
    for section, values in raw.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section [{section}] (known: {', '.join(SCHEMA)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in values.items():
            name = f"{section}.{key}"
            setting = SCHEMA[section].get(key)
            if setting is None:
                raise ConfigError(f"{source}: unknown key {name} (known: {', '.join(SCHEMA[section])})")
            config[section][key] = check_setting(name, value, setting, source)
    _check_floor(config["floor"], source)
    if config["recording"]["enabled"] and not config["recording"]["recipient"]:
        raise ConfigError(f"{source}: recording.recipient is needed with recording.enabled")
    return config


def check_setting(name: str, value: Any, setting: Setting, source: str) -> Any:
    kinds = setting.kind if isinstance(setting.kind, tuple) else (setting.kind,)
    # TOML booleans are ints in Python: never accept one where a number is meant.
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{source}: {name} must be a {_kind_name(kinds)}, not a boolean")
    if not isinstance(value, kinds):
        raise ConfigError(f"{source}: {name} must be a {_kind_name(kinds)}, not {type(value).__name__} {value!r}")
    # NaN compares false with both bounds below, and the daemon's timers cannot run on NaN or infinity.
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: {name} = {value} is not a finite number")
    if setting.minimum is not None and isinstance(value, (int, float)) and value < setting.minimum:
        raise ConfigError(f"{source}: {name} = {value} is below the minimum {setting.minimum}")
    if setting.maximum is not None and isinstance(value, (int, float)) and value > setting.maximum:
        raise ConfigError(f"{source}: {name} = {value} is above the maximum {setting.maximum}")
    if setting.choices and value not in setting.choices:
        raise ConfigError(f"{source}: {name} = {value!r} is not one of {', '.join(setting.choices)}")
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{source}: {name} must be a list of strings")
    # A newline or NUL in a name, path or address only breaks later (a log line, an open()).
    if any(_has_control(text) for text in (value if isinstance(value, list) else [value]) if isinstance(text, str)):
        raise ConfigError(f"{source}: {name} must not contain control characters")
    problem = setting.check(value) if setting.check is not None else None
    if problem is not None:
        raise ConfigError(f"{source}: {name} {problem}")
    return value


def _has_control(text: str) -> bool:
    return any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in text)


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {int: "number", float: "number", str: "string", bool: "boolean", list: "list"}
    return " or ".join(sorted({names.get(kind, kind.__name__) for kind in kinds}))


def load(path: Path | None = None, *, required: bool = False) -> dict[str, dict[str, Any]]:
    """Read and validate the config file; a missing file means all defaults unless ``required``
    (a file the user named: running on defaults instead would hide the typo)."""
    path = path or default_config_path()
    return validate(read(path, required=required), str(path))


def read(path: Path, *, required: bool = False) -> dict[str, Any]:
    """The file's TOML as written (only the keys it sets; not yet validated), {} if it is missing
    and not ``required``. Floor-wide settings need to know which keys the desk set itself."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: no such file") from None
        return {}
    except (OSError, ValueError) as exc:  # a parent that is a file or unreadable; a NUL in the path
        raise ConfigError(f"{path}: cannot read it: {_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a directory, not a config file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block the read or never end
        raise ConfigError(f"{path}: not a regular file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {_reason(exc)}") from None
    if len(data) > MAX_CONFIG_BYTES:  # it grew after the stat
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
