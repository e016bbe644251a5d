"""A unit found by discovery, whichever way it is reachable: below both discovery.py and hid.py,
which each make Candidates, so neither imports the other to get the type."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    path: str
    kind: str  # "usb" (CDC serial port) | "hid" (HID vendor interface only) | "sim"
    serial: str  # USB serial number or the sim's unit serial ("" if unknown)
    description: str
    offhook_ids: bool  # enumerated with offhook's own IDs (not just stock MicroPython)
    hid_path: str = ""  # the same unit's HID vendor interface, for a "usb" unit that has one

    @property
    def transport(self) -> str:
        """How the unit can be reached: "serial", "hid", "serial+hid" or "sim"."""
        if self.kind == "usb":
            return "serial+hid" if self.hid_path else "serial"
        return self.kind
