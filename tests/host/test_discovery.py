"""Unit discovery: USB IDs in the udev rule match the host's, the choice among several units."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from offhook.daemon.service import NoUnit, choose_unit
from offhook.transport.discovery import OFFHOOK_USB_IDS, STOCK_MICROPYTHON_IDS, Candidate, sim_candidates
from tests.conftest import REPO_ROOT


def test_udev_rule_covers_every_id_the_host_looks_for() -> None:
    rules = (REPO_ROOT / "hw" / "99-offhook.rules").read_text()
    tty_ids = {
        (int(vid, 16), int(pid, 16))
        for vid, pid in re.findall(r'SUBSYSTEM=="tty", ATTRS\{idVendor\}=="(\w+)", ATTRS\{idProduct\}=="(\w+)"', rules)
    }
    assert tty_ids == OFFHOOK_USB_IDS | STOCK_MICROPYTHON_IDS
    for line in rules.splitlines():
        if line.startswith('SUBSYSTEM=="tty"'):
            assert 'ENV{ID_MM_DEVICE_IGNORE}="1"' in line  # ModemManager keeps away


def unit(serial: str, path: str = "/dev/ttyACM0") -> Candidate:
    return Candidate(path, "usb", serial, "desk unit", True)


def test_the_only_unit_or_the_configured_one() -> None:
    assert choose_unit([unit("aa")]).serial == "aa"
    assert choose_unit([unit("aa"), unit("bb", "/dev/ttyACM1")], "bb").path == "/dev/ttyACM1"


def test_several_units_without_config_is_a_clear_error() -> None:
    with pytest.raises(NoUnit, match=r"several units attached \(aa at /dev/ttyACM0, bb at /dev/ttyACM1\)"):
        choose_unit([unit("aa"), unit("bb", "/dev/ttyACM1")])
    with pytest.raises(NoUnit, match="unit cc is not attached"):
        choose_unit([unit("aa")], "cc")
    with pytest.raises(NoUnit, match="no desk unit found"):
        choose_unit([])


def test_sim_registry_ignores_dead_and_malformed_entries(tmp_path: Path) -> None:
    port = tmp_path / "pty"
    port.touch()
    (tmp_path / "live.json").write_text(json.dumps({"path": str(port), "serial": "01", "pid": os.getpid()}))
    (tmp_path / "dead.json").write_text(json.dumps({"path": str(port), "serial": "02", "pid": 2**22 + 7}))
    (tmp_path / "gone.json").write_text(json.dumps({"path": str(tmp_path / "nope"), "serial": "03", "pid": 1}))
    (tmp_path / "junk.json").write_text("{not json")
    assert [c.serial for c in sim_candidates(tmp_path)] == ["01"]
