"""Which unit the daemon owns and over which transport: the config, discovery and the rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from offhook.transport.discovery import Candidate


class NoUnit(RuntimeError):
    """No unit, or several and none configured, or it cannot be lent now: the message says why."""


class Discover(Protocol):
    """Finds units (discovery.candidates); ``hid``: also units reachable over USB HID."""

    def __call__(self, *, hid: bool) -> list[Candidate]: ...


@dataclass(frozen=True)
class Route:
    """How the daemon reaches its unit."""

    kind: str  # the transport it opens: "serial" (also simulators) or "hid"
    path: str  # what that transport opens
    unit_path: str  # the unit as `offhook devices` lists it: its serial port when it has one


def route(mode: str, unit: Candidate) -> Route:
    """The transport for ``unit`` under ``unit.transport`` = ``mode`` ("auto", "serial", "hid"):
    "auto" takes the serial port when the unit has one, else its HID vendor interface."""
    if mode == "serial" or (mode == "auto" and unit.kind != "hid"):
        if unit.kind == "hid":
            raise NoUnit(f"unit {unit.serial or unit.path} is reachable over USB HID only (unit.transport = serial)")
        return Route("serial", unit.path, unit.path)
    hid_path = unit.path if unit.kind == "hid" else unit.hid_path
    if not hid_path:
        raise NoUnit(
            f"unit {unit.serial or unit.path} at {unit.path} has no USB HID interface "
            '(unit.transport = "hid"; "auto" would use its serial port)'
        )
    return Route("hid", hid_path, unit.path)


def choose_unit(found: list[Candidate], serial: str = "") -> Candidate:
    """The configured unit, or the only one; a clear error otherwise."""
    if serial:
        for candidate in found:
            if candidate.serial == serial:
                return candidate
        raise NoUnit(f"unit {serial} is not attached (found: {', '.join(c.serial or c.path for c in found) or 'none'})")
    if not found:
        raise NoUnit("no desk unit found (plug one in, or start `offhook sim`)")
    if len(found) > 1:
        listing = ", ".join(f"{c.serial or '?'} at {c.path}" for c in found)
        raise NoUnit(f"several units attached ({listing}): set unit.serial in the config")
    return found[0]
