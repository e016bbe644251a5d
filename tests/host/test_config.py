"""Daemon config: defaults, validation errors that name the key, nothing applied on error."""

from __future__ import annotations

from pathlib import Path

import pytest

from offhook import config


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    loaded = config.load(tmp_path / "absent.toml")
    assert loaded == config.defaults()
    assert loaded["timers"]["wrap_up_s"] == 30


def test_values_are_overlaid(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[timers]\nwrap_up_s = 45\n[softphone]\nsupervisor = "sip:sup@127.0.0.1:5090"\n')
    loaded = config.load(path)
    assert loaded["timers"]["wrap_up_s"] == 45
    assert loaded["timers"]["ring_timeout_s"] == 20
    assert loaded["softphone"]["supervisor"] == "sip:sup@127.0.0.1:5090"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[timers]\nwrap_up_s = 'long'\n", "timers.wrap_up_s must be a number, not str"),
        ("[timers]\nwrap_up_s = true\n", "timers.wrap_up_s must be a number, not a boolean"),
        ("[timers]\nwrap_up_s = -1\n", "timers.wrap_up_s = -1 is below the minimum 0"),
        ("[timers]\nring_timeout_s = 9999\n", "timers.ring_timeout_s = 9999 is above the maximum 300"),
        ("[timers]\nwrap_up = 3\n", "unknown key timers.wrap_up"),
        ("[sound]\nx = 1\n", "unknown section [sound]"),
        ("timers = 3\n", "[timers] must be a table"),
        ("[softphone]\nkind = 'skype'\n", "softphone.kind = 'skype' is not one of baresip, api"),
        ("[softphone]\nbaresip_ctrl = '10.0.0.5:4444'\n", "softphone.baresip_ctrl must be a loopback"),
        ("[softphone]\nsupervisor = 'bob'\n", "softphone.supervisor must be a sip: URI"),
        ("[api]\nallowed_origins = ['crm.example.com']\n", "must look like https://host"),
        ("[api]\nallowed_origins = [1]\n", "api.allowed_origins must be a list of strings"),
        ("[timers\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as error:
        config.load(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_oversize_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# " + "x" * config.MAX_CONFIG_BYTES)
    with pytest.raises(config.ConfigError, match="larger than"):
        config.load(path)
