"""USB HID transport (hidapi): the link protocol's bytes in vendor-page reports.

The desk unit's HID interface (hw/hid.md) has a vendor-defined collection (usage page
0xFFA0, usage 0x01) with report ID 0x10 (unit -> host) and 0x11 (host -> unit), 63 bytes
each: ``[count][seq][61 bytes]``. The link protocol is a COBS byte stream with 0x00
delimiters, so fragmenting is cutting the stream into 61-byte pieces; reassembling is
concatenating them. ``seq`` counts reports (mod 256): after a gap (a report lost in an
OS buffer) or a garbled report the reassembler emits a 0x00 first, so the half frame is
dropped at once instead of being glued to the next one (the frame CRC would catch that
too; the link protocol's retry resends it).

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

from offhook.transport.base import ThreadedTransport, Transport, TransportClosed
from offhook.transport.discovery import OFFHOOK_USB_IDS, Candidate

VENDOR_USAGE_PAGE = 0xFFA0
VENDOR_USAGE = 0x01
REPORT_LINK_IN = 0x10
REPORT_LINK_OUT = 0x11
REPORT_SIZE = 64  # report ID + 63 bytes: one full-speed interrupt packet
CHUNK = 61  # link bytes per report after [count][seq]
DEV_USB_IDS = {(0x1209, 0x0001)}  # pid.codes test PID (hw/usb-ids.md): development units
READ_TIMEOUT_MS = 100  # the reader thread wakes this often to notice close()


def _hidapi() -> ModuleType:
    try:
        import hid
    except ImportError as exc:  # pragma: no cover - depends on the platform's hidapi
        raise TransportClosed(f"USB HID needs the hidapi package: {exc}") from None
    return hid


# ---------------------------------------------------------------- fragmenting (sans-IO)


def fragment(data: bytes, seq: int) -> tuple[list[bytes], int]:
    """Cut link bytes into output reports (report ID 0x11, 64 bytes); returns them and the next seq."""
    reports = []
    for start in range(0, len(data), CHUNK):
        piece = data[start : start + CHUNK]
        report = bytes((REPORT_LINK_OUT, len(piece), seq)) + piece
        reports.append(report.ljust(REPORT_SIZE, b"\x00"))
        seq = (seq + 1) & 0xFF
    return reports, seq


class Reassembler:
    """Input reports (with their report ID first, as hidapi returns them) back into link bytes."""

    def __init__(self, report_id: int = REPORT_LINK_IN) -> None:
        self.report_id = report_id
        self.expected: int | None = None
        self.lost = 0  # reports missing by seq
        self.garbled = 0  # reports whose count does not fit

    def reset(self) -> None:
        self.expected = None

    def feed(self, report: bytes) -> bytes:
        if not report or report[0] != self.report_id:
            return b""  # telephony/consumer reports and other collections: not the link
        if len(report) < 3 or report[1] > CHUNK or len(report) < 3 + report[1]:
            self.garbled += 1
            self.expected = None
            return b"\x00"
        count, seq = report[1], report[2]
        out = b""
        if self.expected is not None and seq != self.expected:
            self.lost += (seq - self.expected) & 0xFF
            out = b"\x00"  # ends the half frame: the decoder drops it and resynchronises
        self.expected = (seq + 1) & 0xFF
        return out + bytes(report[3 : 3 + count])


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
