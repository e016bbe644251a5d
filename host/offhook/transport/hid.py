"""USB HID transport (hidapi): the link protocol's bytes in vendor-page reports.

The desk unit's HID interface (hw/hid.md) has a vendor-defined collection with one input
and one output report for the link. Their framing is ``offhook.hidframe``, the same file
the unit runs: this module only finds units and moves reports.

Everything that touches hidapi goes through one module object (``hid``, or a fake in
tests): ``enumerate()``, ``device()`` with ``open_path``, ``read(size, timeout_ms)``,
``write(data)``, ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from offhook.hidframe import REPORT_SIZE, VENDOR_USAGE, VENDOR_USAGE_PAGE, Reassembler, fragment
from offhook.transport.base import ThreadedTransport, Transport, TransportClosed
from offhook.transport.candidate import Candidate
from offhook.usbids import DEV_USB_IDS, OFFHOOK_USB_IDS

READ_TIMEOUT_MS = 100  # the reader thread wakes this often to notice close()


def _hidapi() -> ModuleType:
    try:
        import hid
    except ImportError as exc:  # pragma: no cover - depends on the platform's hidapi
        raise TransportClosed(f"USB HID needs the hidapi package: {exc}") from None
    return hid


# ---------------------------------------------------------------- discovery and hot-plug


@dataclass(frozen=True)
class HidUnit:
    path: str
    serial: str
    vid: int
    pid: int
    product: str

    def candidate(self) -> Candidate:
        own_ids = (self.vid, self.pid) in OFFHOOK_USB_IDS
        return Candidate(self.path, "hid", self.serial, f"{self.product} (USB HID)", own_ids)


def _path_text(path: bytes | str) -> str:
    return path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path


def hid_units(hid_module: Any = None) -> list[HidUnit]:
    """Units' link collections: offhook VID/PID and the vendor usage page (one entry per unit)."""
    hid = hid_module or _hidapi()
    found: dict[str, HidUnit] = {}
    for info in hid.enumerate():
        ids = (info.get("vendor_id"), info.get("product_id"))
        if ids not in OFFHOOK_USB_IDS and ids not in DEV_USB_IDS:
            continue
        if info.get("usage_page") != VENDOR_USAGE_PAGE or info.get("usage") != VENDOR_USAGE:
            continue
        product = str(info.get("product_string") or "")
        if ids in DEV_USB_IDS and "offhook" not in (product + str(info.get("manufacturer_string") or "")).lower():
            continue  # the shared test PID: only our own firmware's strings
        path = _path_text(info["path"])
        found[path] = HidUnit(path, str(info.get("serial_number") or ""), ids[0], ids[1], product or "offhook")
    return [found[p] for p in sorted(found)]


def hid_candidates(hid_module: Any = None) -> list[Candidate]:
    """Like discovery.usb_candidates(), for units reachable over USB HID (kind "hid")."""
    try:
        return [unit.candidate() for unit in hid_units(hid_module)]
    except (OSError, TransportClosed):
        return []


def transport_for(candidate: Candidate) -> Transport:
    """The transport a discovered unit needs: HID for kind "hid", serial for USB CDC and simulators."""
    if candidate.kind == "hid":
        return HidTransport(candidate.path)
    from offhook.transport.serial import SerialTransport

    return SerialTransport(candidate.path)


class HidMonitor:
    """Hot-plug by polling hidapi's enumeration (hidapi's Python binding has no callbacks)."""

    def __init__(self, hid_module: Any = None) -> None:
        self.hid_module = hid_module
        self.known: dict[str, HidUnit] = {}

    def poll(self) -> tuple[list[HidUnit], list[HidUnit]]:
        """(plugged in, unplugged) since the last poll."""
        now = {unit.path: unit for unit in hid_units(self.hid_module)}
        added = [now[p] for p in now if p not in self.known]
        removed = [self.known[p] for p in self.known if p not in now]
        self.known = now
        return added, removed


# ---------------------------------------------------------------- the transport


class HidTransport(ThreadedTransport):
    kind = "hid"
    gone_errors = (OSError, ValueError, TypeError, AttributeError)

    def __init__(self, path: str, hid_module: Any = None) -> None:
        super().__init__(path)
        self._hid_module = hid_module
        self._device: Any = None
        self._write_lock = threading.Lock()
        self._seq = 0
        self.reassembler = Reassembler()

    async def open(self) -> None:
        hid = self._hid_module or _hidapi()

        def _open() -> Any:
            device = hid.device()
            device.open_path(self.path.encode("utf-8", "surrogateescape"))
            return device

        try:
            self._device = await asyncio.to_thread(_open)
        except (OSError, ValueError) as exc:
            raise TransportClosed(f"cannot open HID {self.path}: {exc}") from None
        self.reassembler.reset()
        self._start_reader()

    def _read_blocking(self) -> bytes:
        report = self._device.read(REPORT_SIZE, READ_TIMEOUT_MS)
        return (self.reassembler.feed(bytes(report)) or b"") if report else b""

    async def write(self, data: bytes) -> None:
        if self._device is None or self._closing:
            raise TransportClosed(f"HID {self.path} is not open")
        with self._write_lock:
            reports, self._seq = fragment(data, self._seq)
        try:
            await asyncio.to_thread(self._write_reports, reports)
        except (OSError, ValueError) as exc:
            raise TransportClosed(f"HID {self.path}: {exc}") from None

    def _write_reports(self, reports: Iterable[bytes]) -> None:
        with self._write_lock:
            for report in reports:
                written = self._device.write(report)
                if written is not None and written < 0:
                    raise OSError("write failed (unit unplugged?)")

    def close(self) -> None:
        self._stop_reader()
        if self._device is not None:
            with contextlib.suppress(Exception):
                self._device.close()
