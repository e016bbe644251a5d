"""Find desk units: USB serial ports by VID/PID, and running simulated units.

A real unit enumerates with offhook's own USB IDs (hw/usb-ids.md); a board still on
stock MicroPython IDs is a candidate too, recognised by its HELLO when opened.
Simulated units (`offhook sim`) register their pseudo-terminal in the runtime dir.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import platformdirs
from serial.tools import list_ports

# (VID, PID) pairs: offhook's allocation first, then stock MicroPython boards.
OFFHOOK_USB_IDS = {(0x1209, 0x0001)}  # pid.codes test PID until offhook's own is allocated
STOCK_MICROPYTHON_IDS = {(0x2E8A, 0x0005), (0x303A, 0x4001)}  # RP2040, ESP32-S3 (MicroPython)


@dataclass(frozen=True)
class Candidate:
    path: str
    kind: str  # "usb" | "sim"
    serial: str  # USB serial number or the sim's unit serial ("" if unknown)
    description: str
    offhook_ids: bool  # enumerated with offhook's own IDs (not just stock MicroPython)


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


def candidates(registry: Path | None = None) -> list[Candidate]:
    return usb_candidates() + sim_candidates(registry)
