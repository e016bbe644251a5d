"""Floor-wide settings: layered policy over the daemon's own config, validated by its one schema.

The most specific value wins: central desk > team > site > board model > the desk's local TOML >
defaults. A site or a team may lock a key: its value then wins over every other layer, the
desk's local TOML included, and the desk reports that it did.
Keys are flat names (``wrap_up_s``); each maps to one key of ``config.SCHEMA`` and is checked by
the same rules the TOML loader uses, so central and the daemon agree on what is valid. The unit's
settings (``UNIT_KEYS``: brightness, debounce_ms, button_map...) are checked by the firmware's own
validator (firmware/offhook_fw/config.py, run here under CPython), so the unit agrees too. Sans-IO:
central checks a change with ``check_layer`` before storing it, the daemon checks a whole policy
with ``check_policy`` before using it (a forged message is refused there too).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass, field
from functools import cache
from types import ModuleType
from typing import Any

from offhook import config, linkproto
from offhook.firmware import firmware_root

# The daemon settings central may set, by flat name: its timers, the consult timeout, the supervisor.
POLICY_KEYS: dict[str, tuple[str, str]] = {
    **{key: ("timers", key) for key in config.SCHEMA["timers"]},
    "consult_timeout_s": ("softphone", "consult_timeout_s"),
    "supervisor": ("softphone", "supervisor"),
}


@cache
def firmware_config() -> ModuleType:
    """The firmware's config module (defaults and validator), loaded under CPython. It imports
    ``linkproto`` as the unit does; the host's is the same file (offhook.firmware.SHARED)."""
    spec = importlib.util.spec_from_file_location("offhook_fw_config", firmware_root() / "offhook_fw" / "config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("linkproto")
    sys.modules["linkproto"] = linkproto
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["linkproto"]
        else:
            sys.modules["linkproto"] = saved
    return module


# The unit's settings central may set: every key of the firmware's config schema.
UNIT_KEYS: tuple[str, ...] = tuple(firmware_config().DEFAULTS)
CENTRAL_LAYERS = ("desk", "team", "site", "board")  # most specific first
LOCKING_LAYERS = ("site", "team")  # central keeps one lock per key; a site's replaces a team's
MAX_POLICY_VERSION = 2**53  # JSON-safe


class PolicyError(ValueError):
    """A policy or a value that is not valid: the message names the layer and key."""


@dataclass(frozen=True)
class Policy:
    """What central says for one desk: each layer's values that apply to it, and the locks."""

    version: int
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer -> {flat key: value}
    locks: dict[str, str] = field(default_factory=dict)  # flat key -> the layer that locked it


@dataclass(frozen=True)
class Effective:
    value: Any
    source: str  # "desk", "team", "site", "board", "local" or "default"
    locked: bool = False  # set by a lock: it overrides the desk's local config


def check_unit_value(key: str, value: Any, where: str = "policy") -> Any:
    """A unit setting checked by the firmware's own validator (a button map must keep hook, say);
    PolicyError otherwise."""
    fw = firmware_config()
    if isinstance(value, float) and not math.isfinite(value):
        raise PolicyError(f"{where}: unit.{key} = {value} is not a finite number")
    _, reason = fw.validate({key: value}, fw.defaults())
    if reason:
        raise PolicyError(f"{where}: unit.{key}: {reason}")
    return list(value) if isinstance(value, list) else value


def check_value(key: str, value: Any, where: str = "policy") -> Any:
    """The value if ``key`` may be set to it by central; PolicyError naming the key otherwise."""
    if key in UNIT_KEYS:
        return check_unit_value(key, value, where)
    if key not in POLICY_KEYS:
        settable = ", ".join(sorted([*POLICY_KEYS, *UNIT_KEYS]))
        raise PolicyError(f"{where}: unknown key {key!r} (settable: {settable})")
    section, name = POLICY_KEYS[key]
    try:
        return config.check_setting(f"{section}.{name}", value, config.SCHEMA[section][name], where)
    except config.ConfigError as exc:
        raise PolicyError(str(exc)) from None


def check_layer(layer: str, values: Any) -> dict[str, Any]:
    if layer not in CENTRAL_LAYERS:
        raise PolicyError(f"policy: unknown layer {layer!r} (layers: {', '.join(CENTRAL_LAYERS)})")
    if not isinstance(values, dict):
        raise PolicyError(f"policy: layer {layer} must be an object of key: value")
    return {key: check_value(str(key), value, f"policy {layer}") for key, value in values.items()}


def check_policy(raw: Any) -> Policy:
    """A policy as it arrives (JSON-decoded), checked whole: any bad part refuses all of it."""
    if not isinstance(raw, dict):
        raise PolicyError("policy: must be an object")
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < MAX_POLICY_VERSION:
        raise PolicyError(f"policy: version must be a positive integer, not {version!r}")
    layers_raw = raw.get("layers", {})
    if not isinstance(layers_raw, dict):
        raise PolicyError("policy: layers must be an object")
    layers = {layer: check_layer(layer, values) for layer, values in layers_raw.items()}
    locks = raw.get("locks", {})
    if not isinstance(locks, dict):
        raise PolicyError("policy: locks must be an object of key: layer")
    for key, layer in locks.items():
        if layer not in LOCKING_LAYERS:
            raise PolicyError(f"policy: {key!r} locked by {layer!r}: only a site or a team may lock a key")
        if key not in layers.get(layer, {}):
            raise PolicyError(f"policy: {key!r} is locked by the {layer} but the {layer} does not set it")
    unknown = set(raw) - {"version", "layers", "locks"}
    if unknown:
        raise PolicyError(f"policy: unknown fields {', '.join(sorted(unknown))}")
    return Policy(version, layers, dict(locks))


def effective(policy: Policy | None, local: dict[str, dict[str, Any]]) -> dict[str, Effective]:
    """Every policy key's value and where it came from. ``local`` is the desk's TOML as written
    (only the keys it sets), not the loader's output with defaults filled in."""
    result = {}
    for key, (section, name) in POLICY_KEYS.items():
        result[key] = _one(key, policy, local.get(section, {}), name, config.SCHEMA[section][name].default)
    return result


def unit_effective(policy: Policy | None) -> dict[str, Effective]:
    """The unit's settings: central's, else the firmware's default (the desk's TOML has none)."""
    defaults = firmware_config().DEFAULTS
    return {key: _one(key, policy, {}, key, defaults[key]) for key in UNIT_KEYS}


def _one(key: str, policy: Policy | None, local: dict[str, Any], name: str, default: Any) -> Effective:
    if policy is not None:
        lock = policy.locks.get(key)
        if lock is not None:
            return Effective(policy.layers[lock][key], lock, locked=True)
        for layer in CENTRAL_LAYERS:
            if key in policy.layers.get(layer, {}):
                return Effective(policy.layers[layer][key], layer)
    if name in local:
        return Effective(local[name], "local")
    return Effective(default, "default")


def apply(base: dict[str, dict[str, Any]], values: dict[str, Effective]) -> dict[str, dict[str, Any]]:
    """A copy of the daemon's config with the effective policy values in it."""
    merged = {section: dict(keys) for section, keys in base.items()}
    for key, chosen in values.items():
        if key not in POLICY_KEYS:
            continue  # a unit setting: the daemon sends those to its unit
        section, name = POLICY_KEYS[key]
        merged[section][name] = chosen.value
    return merged
