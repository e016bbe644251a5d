"""The daemon's TOML configuration: defaults, validation with errors that name the key.

The file lives in the platform's user config dir (``offhook config path`` prints it).
Every value is checked against the schema below; an unknown key, a wrong type or an
out-of-range value is a ConfigError naming the key, and nothing is applied.
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

APP_NAME = "offhook"
MAX_CONFIG_BYTES = 64 * 1024


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


SCHEMA: dict[str, dict[str, Setting]] = {
    "agent": {
        "name": Setting(str, "", help="agent name recorded with each call (default: the login name)"),
        "timezone": Setting(str, "", help="IANA time zone for reports (default: the PC's)"),
    },
    "unit": {
        "serial": Setting(str, "", help="serial number of the unit to use when several are attached"),
        "port": Setting(str, "", help="explicit serial port path (skips discovery)"),
        "transport": Setting(str, "auto", choices=("auto", "serial", "hid")),
    },
    "softphone": {
        "kind": Setting(str, "baresip", choices=("baresip", "api")),
        "baresip_ctrl": Setting(str, "127.0.0.1:4444", help="baresip ctrl_tcp address (loopback only)"),
        "supervisor": Setting(str, "", help="SIP URI the escalate button consults and transfers to"),
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
        "allowed_origins": Setting(list, [], help="web origins allowed to pair, e.g. https://crm.example.com"),
    },
}


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
            config[section][key] = _check(name, value, setting, source)
    _check_cross_field(config, source)
    return config


def _check(name: str, value: Any, setting: Setting, source: str) -> Any:
    kinds = setting.kind if isinstance(setting.kind, tuple) else (setting.kind,)
    # TOML booleans are ints in Python: never accept one where a number is meant.
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{source}: {name} must be a {_kind_name(kinds)}, not a boolean")
    if not isinstance(value, kinds):
        raise ConfigError(f"{source}: {name} must be a {_kind_name(kinds)}, not {type(value).__name__} {value!r}")
    if setting.minimum is not None and isinstance(value, (int, float)) and value < setting.minimum:
        raise ConfigError(f"{source}: {name} = {value} is below the minimum {setting.minimum}")
    if setting.maximum is not None and isinstance(value, (int, float)) and value > setting.maximum:
        raise ConfigError(f"{source}: {name} = {value} is above the maximum {setting.maximum}")
    if setting.choices and value not in setting.choices:
        raise ConfigError(f"{source}: {name} = {value!r} is not one of {', '.join(setting.choices)}")
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{source}: {name} must be a list of strings")
    return value


def _check_cross_field(config: dict[str, dict[str, Any]], source: str) -> None:
    host, _, port = config["softphone"]["baresip_ctrl"].rpartition(":")
    if host not in ("127.0.0.1", "localhost", "::1") or not port.isdigit():
        raise ConfigError(f"{source}: softphone.baresip_ctrl must be a loopback HOST:PORT, not {host}:{port}")
    supervisor = config["softphone"]["supervisor"]
    if supervisor and not supervisor.startswith(("sip:", "sips:")):
        raise ConfigError(f"{source}: softphone.supervisor must be a sip: URI, not {supervisor!r}")
    for origin in config["api"]["allowed_origins"]:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise ConfigError(f"{source}: api.allowed_origins entry {origin!r} must look like https://host[:port]")


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {int: "number", float: "number", str: "string", bool: "boolean", list: "list"}
    return " or ".join(sorted({names.get(kind, kind.__name__) for kind in kinds}))


def load(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Read and validate the config file; a missing file means all defaults."""
    path = path or default_config_path()
    if not path.exists():
        return defaults()
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return validate(raw, str(path))
