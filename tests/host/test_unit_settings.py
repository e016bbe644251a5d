"""The unit's settings in a floor policy: checked by the firmware's own validator (run under CPython)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from offhook import linkproto as L
from offhook.settings import UNIT_KEYS, PolicyError, check_layer, check_policy, firmware_config, unit_effective


def test_the_unit_keys_are_the_firmwares_own_schema() -> None:
    fw = firmware_config()
    assert set(UNIT_KEYS) == set(fw.DEFAULTS) >= {"brightness", "debounce_ms", "long_press_ms", "button_map"}
    assert fw.validate({"brightness": 500}, fw.defaults())[1] == "brightness=500 out of range 1..100"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"brightness": "dim"}, "unit.brightness: brightness must be an integer"),
        ({"brightness": 0}, "brightness=0 out of range 1..100"),
        ({"brightness": math.nan}, "unit.brightness = nan is not a finite number"),
        ({"debounce_ms": 1.5}, "debounce_ms must be an integer"),
        ({"button_map": ["none", *L.BUTTON_NAMES[1:]]}, "unit.button_map: button_map leaves hook unmapped"),
        ({"button_map": ["hook", "hook", *L.BUTTON_NAMES[2:]]}, "hook on more than one input"),
        ({"double_press": ["coffee"]}, "unknown button 'coffee'"),
    ],
)
def test_bad_unit_values_are_refused_with_the_key_named(values: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        check_layer("site", values)


def test_unit_settings_resolve_like_the_daemons_and_default_to_the_firmwares() -> None:
    swapped = ["mute", "hook", *L.BUTTON_NAMES[2:]]
    policy = check_policy(
        {"version": 2, "layers": {"desk": {"brightness": 30}, "team": {"button_map": swapped}}, "locks": {}}
    )
    chosen = unit_effective(policy)
    assert (chosen["brightness"].value, chosen["brightness"].source) == (30, "desk")
    assert (chosen["button_map"].value, chosen["button_map"].source) == (swapped, "team")
    assert (chosen["debounce_ms"].value, chosen["debounce_ms"].source) == (20, "default")
    with pytest.raises(PolicyError, match="leaves hook unmapped"):  # a forged policy, refused whole at the desk
        check_policy({"version": 3, "layers": {"desk": {"button_map": ["none", *L.BUTTON_NAMES[1:]]}}})
