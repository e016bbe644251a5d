"""Unit configuration: defaults, validation, and JSON on flash with an atomic write.

``validate(changes, base)`` checks a whole set of changes at once and returns
``(new_config, None)`` or ``(base, "reason")``: a refused change alters nothing.
``load(path)`` never raises: a missing, corrupt or invalid file gives the defaults
and a reason the caller reports over the link. ``save`` writes a temp file and
renames it over the old one, so a power cut leaves either the old or the new file.
"""

import json
import os

from linkproto import BUTTON_NAMES

NO_BUTTON = "none"

# key: (low, high) for integers (their defaults are in DEFAULTS).
_INTS = {
    "debounce_ms": (5, 100),
    "long_press_ms": (300, 3000),
    "double_press_ms": (150, 800),
    "brightness": (1, 100),  # percent of full LED brightness
}
# button_map[i] is the logical button wired to input K(i+1); double_press lists the
# buttons that wait for a second press (only those: waiting delays their short press).
DEFAULTS = {
    "debounce_ms": 20,
    "long_press_ms": 800,
    "double_press_ms": 300,
    "brightness": 80,
    "button_map": list(BUTTON_NAMES),
    "double_press": ["state"],
}
PATH = "/config.json"


def defaults():
    return copy(DEFAULTS)


def copy(config):
    out = {}
    for key in config:
        value = config[key]
        out[key] = list(value) if isinstance(value, list) else value
    return out


def _check(key, value):
    """None if ``value`` is acceptable for ``key``, else the reason."""
    if key in _INTS:
        low, high = _INTS[key]
        if not isinstance(value, int) or isinstance(value, bool):
            return "%s must be an integer" % key
        if not low <= value <= high:
            return "%s=%d out of range %d..%d" % (key, value, low, high)
        return None
    if key == "button_map":
        if not isinstance(value, list) or len(value) != len(BUTTON_NAMES):
            return "button_map must list %d button names (one per input)" % len(BUTTON_NAMES)
        for name in value:
            if name != NO_BUTTON and name not in BUTTON_NAMES:
                return "button_map: unknown button %r" % (name,)
            if name != NO_BUTTON and value.count(name) > 1:
                return "button_map: %s on more than one input" % name
        if BUTTON_NAMES[0] not in value:  # hook: without it no call is answered or ended from the unit
            return "button_map leaves hook unmapped"
        return None
    if key == "double_press":
        if not isinstance(value, list):
            return "double_press must be a list of button names"
        for name in value:
            if name not in BUTTON_NAMES:
                return "double_press: unknown button %r" % (name,)
        return None
    return "unknown config key %r" % (key,)


def validate(changes, base):
    """-> (new_config, None) or (base, reason). All of ``changes`` or none of it."""
    if not isinstance(changes, dict):
        return base, "config must be a JSON object"
    for key in sorted(changes):
        reason = _check(key, changes[key])
        if reason:
            return base, reason
    new = copy(base)
    for key in changes:
        value = changes[key]
        new[key] = list(value) if isinstance(value, list) else value
    return new, None


def load(path=PATH):
    """-> (config, None) or (defaults, reason). Never raises."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return defaults(), "no config file, using defaults"
    try:
        data = json.loads(raw.decode())
    except (ValueError, UnicodeError):  # MicroPython's JSON errors are ValueError
        return defaults(), "config file is not valid JSON, using defaults"
    config, reason = validate(data, defaults())
    if reason:
        return defaults(), "config file rejected (%s), using defaults" % reason
    return config, None


def save(config, path=PATH):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(config))
    os.rename(tmp, path)  # atomic on littlefs: the old file stays until the new one is whole


def input_buttons(config):
    """bytes: logical button number for each input (255: input unused)."""
    out = bytearray(len(BUTTON_NAMES))
    for i, name in enumerate(config["button_map"]):
        out[i] = BUTTON_NAMES.index(name) if name in BUTTON_NAMES else 255
    return bytes(out)


def double_mask(config):
    """Bit i set when input i carries a button listed in double_press."""
    mask = 0
    for i, name in enumerate(config["button_map"]):
        if name in config["double_press"]:
            mask |= 1 << i
    return mask
