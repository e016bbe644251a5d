"""Find desk units: USB serial ports by VID/PID, running simulated units and, on request,
units reachable over USB HID.

A real unit enumerates with offhook's own USB IDs (hw/usb-ids.md); a board still on
stock MicroPython IDs is a candidate too, recognised by its HELLO when opened.
Simulated units (`offhook sim`) register their pseudo-terminal in the runtime dir.
A unit with USB HID shows up twice, as its CDC serial port and as its HID vendor
interface; ``candidates(hid=True)`` makes that one Candidate (matched by USB serial number).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import platformdirs
from serial.tools import list_ports

from offhook.transport.candidate import Candidate
from offhook.transport.hid import hid_candidates
from offhook.usbids import OFFHOOK_USB_IDS, STOCK_MICROPYTHON_IDS


def sim_registry_dir() -> Path:
    return Path(platformdirs.user_runtime_dir("offhook")) / "sim"


def usb_candidates() -> list[Candidate]:
    found = []
    for port in list_ports.comports():
        ids = (port.vid, port.pid)
        if ids in OFFHOOK_USB_IDS or ids in STOCK_MICROPYTHON_IDS:
            found.append(
                Candidate(port.device, "usb", port.serial_number or "", port.description or "", ids in OFFHOOK_USB_IDS)
            )
    return found


def sim_candidates(registry: Path | None = None) -> list[Candidate]:
    """Running simulated units; entries whose process is gone are ignored."""
    found = []
    for entry in sorted((registry or sim_registry_dir()).glob("*.json")):
        try:
            info = json.loads(entry.read_text())
            path, serial, pid = str(info["path"]), str(info["serial"]), int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if Path(f"/proc/{pid}").exists() and Path(path).exists():
            found.append(Candidate(path, "sim", serial, f"simulated unit {serial}", True))
    return found


def candidates(registry: Path | None = None, *, hid: bool = False, hid_module: Any = None) -> list[Candidate]:
    """Serial-port and simulated units; with ``hid`` also units over USB HID (``hid_module``:
    hidapi, or a stand-in). A unit seen on both is one Candidate: its serial port, with
    ``hid_path`` set. Without ``hid`` (the daemon, flash) every candidate opens as a serial port."""
    found = usb_candidates()
    if hid:
        found = merge_hid(found, hid_candidates(hid_module))
    return found + sim_candidates(registry)


def merge_hid(serial_ports: list[Candidate], hid_units: list[Candidate]) -> list[Candidate]:
    """Serial ports with the HID interface of the same unit (same USB serial number) attached,
    then the units found only over HID. A unit without a serial number cannot be matched: it
    stays two rows rather than risk joining two units."""
    by_serial = {c.serial.lower(): c for c in hid_units if c.serial}
    merged = []
    joined: set[str] = set()
    for port in serial_ports:
        twin = by_serial.get(port.serial.lower()) if port.serial else None
        if twin is not None and twin.path not in joined:
            joined.add(twin.path)
            port = replace(port, hid_path=twin.path)
        merged.append(port)
    return merged + [c for c in hid_units if c.path not in joined]
