"""`offhook devices` on a narrow terminal: a serial number is never cut (they differ in their last digits)."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
from rich.cells import cell_len

from offhook.cli import main

SERIALS = ["e6614c311b6a8f21", "e6614c311b6a8f22", "3485187a1c04"]  # machine.unique_id(): RP2040, ESP32-S3


@pytest.fixture
def three_units(monkeypatch: pytest.MonkeyPatch) -> None:
    from offhook.api import client
    from offhook.fleet import flasher
    from offhook.transport import discovery

    units = [
        discovery.Candidate(f"/dev/serial/by-id/usb-offhook_desk_unit_{serial}-if00", "usb", serial, "", True)
        for serial in SERIALS
    ]

    async def query(path: str, transport: str = "serial", hid_path: str = "") -> flasher.UnitInfo:
        serial = path.split("unit_")[1].removesuffix("-if00")
        health = "ok" if serial != SERIALS[1] else "\x1b[2Jboot loop [3/3]"  # unit-reported text, printed as is
        return flasher.UnitInfo(path, "serial", serial, "desk-unit-rev-c", "1.12.0-rc.3", "b", health)

    async def no_daemon(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(discovery, "candidates", lambda *a, **k: units)
    monkeypatch.setattr(flasher, "query", query)
    monkeypatch.setattr(client, "daemon_unit", no_daemon)


@pytest.mark.parametrize("width", [80, 60])
def test_devices_shows_every_serial_whole(
    three_units: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], width: int
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["devices"]) == 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # styles (bold, italic) only
    assert "…" not in out and "\x1b" not in out
    assert max(cell_len(line) for line in out.splitlines()) <= width
    for serial in SERIALS:
        assert serial in out
    assert "1.12.0-rc.3" in out and "[3/3]" in out
