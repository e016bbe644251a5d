"""The host's HID transport against a fake at the hidapi boundary only: enumeration, fragmenting
maximum-size frames, lost/garbled reports, a device vanishing mid-frame, hot-plug, and the
daemon's UnitSession over it."""

from __future__ import annotations

import asyncio
import os
import queue
from collections.abc import Callable
from typing import Any

import pytest

from offhook import linkproto as L
from offhook.daemon.unit import UnitSession
from offhook.hidframe import CHUNK, REPORT_LINK_IN, REPORT_LINK_OUT, REPORT_SIZE, Reassembler, fragment
from offhook.transport.base import TransportClosed
from offhook.transport.hid import HidMonitor, HidTransport, hid_candidates

PATH = "/dev/hidraw7"


def _info(path: str, usage_page: int = 0xFFA0, usage: int = 1, vid: int = 0x1209, pid: int = 0x0001, **kw: Any):
    info = {
        "path": path.encode(),
        "vendor_id": vid,
        "product_id": pid,
        "serial_number": "0ff0514d00000001",
        "usage_page": usage_page,
        "usage": usage,
        "product_string": "offhook desk unit",
        "manufacturer_string": "offhook",
        "interface_number": 2,
    }
    info.update(kw)
    return info


class FakeDevice:
    """One HID device as hidapi shows it: reports in (a queue), reports written, and unplugging."""

    def __init__(self) -> None:
        self.inbox: queue.Queue[bytes] = queue.Queue()
        self.written: list[bytes] = []
        self.gone = False
        self.on_write: Callable[[bytes], None] | None = None

    def unit_sends(self, data: bytes, seq: int = 0, drop: set[int] | None = None) -> int:
        """Queue link bytes as input reports (report ID 0x10); returns the next seq."""
        reports, seq = fragment(data, seq)
        for i, r in enumerate(reports):
            if i not in (drop or set()):
                self.inbox.put(bytes((REPORT_LINK_IN,)) + r[1:])
        return seq


class FakeHandle:
    def __init__(self, hid: FakeHid) -> None:
        self.hid = hid
        self.dev: FakeDevice | None = None

    def open_path(self, path: bytes) -> None:
        dev = self.hid.devices.get(path.decode())
        if dev is None or dev.gone:
            raise OSError("open failed")
        self.dev = dev

    def read(self, size: int, timeout_ms: int = 0) -> list[int]:
        assert self.dev is not None and size == REPORT_SIZE
        if self.dev.gone:
            raise OSError("read error")
        try:
            return list(self.dev.inbox.get(timeout=timeout_ms / 1000))
        except queue.Empty:
            if self.dev.gone:
                raise OSError("read error") from None
            return []

    def write(self, data: bytes) -> int:
        assert self.dev is not None
        if self.dev.gone:
            return -1
        self.dev.written.append(bytes(data))
        if self.dev.on_write:
            self.dev.on_write(bytes(data))
        return len(data)

    def close(self) -> None:
        self.dev = None


class FakeHid:
    """The hidapi module: enumerate() and device()."""

    def __init__(self) -> None:
        self.infos: list[dict[str, Any]] = []
        self.devices: dict[str, FakeDevice] = {}

    def plug(self, path: str = PATH) -> FakeDevice:
        dev = FakeDevice()
        self.devices[path] = dev
        self.infos += [_info(path, 0x0B, 0x05), _info(path, 0x0C, 0x01), _info(path)]  # one per collection
        return dev

    def unplug(self, path: str = PATH) -> None:
        self.devices.pop(path).gone = True
        self.infos = [i for i in self.infos if i["path"] != path.encode()]

    def enumerate(self, vid: int = 0, pid: int = 0) -> list[dict[str, Any]]:
        return list(self.infos)

    def device(self) -> FakeHandle:
        return FakeHandle(self)


def _frames(data: bytes) -> list[L.Frame]:
    return [i for i in L.Decoder().feed(data) if isinstance(i, L.Frame)]


def _max_frame(seq: int = 7) -> bytes:
    frame = L.encode_frame(L.PING, seq, os.urandom(L.MAX_PAYLOAD))
    assert len(frame) > 8 * CHUNK  # nine reports
    return frame


async def _read_until_closed(t: HidTransport) -> tuple[bytes, bool]:
    data = b""
    try:
        while True:
            data += await asyncio.wait_for(t.read(), 2)
    except TransportClosed:
        return data, True
    except TimeoutError:
        return data, False


def test_enumeration_finds_units_by_ids_and_vendor_page() -> None:
    hid = FakeHid()
    hid.plug()
    hid.infos += [
        _info("/dev/hidraw1", vid=0x046D, pid=0xC52B),  # someone else's device with that page
        _info("/dev/hidraw2", pid=0x0001, product_string="lab gadget", manufacturer_string="acme"),  # test PID
        _info("/dev/hidraw3", vid=0x2E8A, pid=0x0005),  # stock MicroPython: no HID telephony
    ]
    found = hid_candidates(hid)
    assert [(c.path, c.kind, c.serial) for c in found] == [(PATH, "hid", "0ff0514d00000001")]
    assert "USB HID" in found[0].description


def test_fragmenting_a_maximum_frame() -> None:
    frame = _max_frame()
    reports, seq = fragment(frame, 250)
    assert len(reports) == 9 and seq == (250 + 9) & 0xFF
    assert all(len(r) == REPORT_SIZE and r[0] == REPORT_LINK_OUT and r[1] <= CHUNK for r in reports)
    assert [r[2] for r in reports] == [250, 251, 252, 253, 254, 255, 0, 1, 2]  # wraps
    # the unit's direction, reassembled
    assembler = Reassembler()
    data = b"".join(assembler.feed(bytes((REPORT_LINK_IN,)) + r[1:]) for r in reports)
    assert data == frame and len(_frames(data)[0].payload) == L.MAX_PAYLOAD
    assert assembler.lost == assembler.garbled == 0


def test_transport_writes_and_reads_maximum_frames() -> None:
    hid = FakeHid()
    dev = hid.plug()

    async def main() -> bytes:
        t = HidTransport(PATH, hid)
        await t.open()
        await t.write(_max_frame(1))
        await t.write(b"\x00")
        dev.unit_sends(_max_frame(2) + L.encode_frame(L.PONG, 3, L.encode_ping(5)))
        data = b""
        while len(_frames(data)) < 2:
            data += await asyncio.wait_for(t.read(), 2)
        t.close()
        return data

    data = asyncio.run(main())
    assert [f.seq for f in _frames(data)] == [2, 3]
    assert len(dev.written) == 10 and [r[2] for r in dev.written] == list(range(10))  # seq runs on across writes
    host_bytes = b"".join(r[3 : 3 + r[1]] for r in dev.written)
    assert [f.type for f in _frames(host_bytes)] == [L.PING]


def test_lost_and_garbled_reports_cost_one_frame_each() -> None:
    first = L.encode_frame(L.PING, 1, bytes(range(200)))
    second = L.encode_frame(L.PONG, 2, L.encode_ping(2))
    third = L.encode_frame(L.PONG, 3, L.encode_ping(3))
    assembler = Reassembler()
    reports, seq = fragment(first, 0)
    more, seq = fragment(second, seq)
    data = b"".join(assembler.feed(bytes((REPORT_LINK_IN,)) + r[1:]) for i, r in enumerate(reports + more) if i != 2)
    assert assembler.lost == 1
    assert [f.seq for f in _frames(data)] == [2]  # the damaged frame is dropped, the next one is whole
    # garbled: a count larger than a report can hold
    bad = bytes((REPORT_LINK_IN, 200, seq)) + bytes(61)
    tail, _ = fragment(third, seq + 1)
    data = assembler.feed(bad) + b"".join(assembler.feed(bytes((REPORT_LINK_IN,)) + r[1:]) for r in tail)
    assert assembler.garbled == 1 and [f.seq for f in _frames(data)] == [3]
    # other report IDs on the same handle (telephony buttons) are not link bytes
    assert assembler.feed(b"\x01\x01") == b"" and assembler.feed(b"") == b""


def test_lost_report_through_the_transport() -> None:
    hid = FakeHid()
    dev = hid.plug()

    async def main() -> list[L.Frame]:
        t = HidTransport(PATH, hid)
        await t.open()
        seq = dev.unit_sends(L.encode_frame(L.PING, 1, bytes(300)), drop={3})
        dev.unit_sends(L.encode_frame(L.PONG, 2, L.encode_ping(9)), seq)
        decoder = L.Decoder()
        got: list[L.Frame] = []
        while not got:
            got += [i for i in decoder.feed(await asyncio.wait_for(t.read(), 2)) if isinstance(i, L.Frame)]
        t.close()
        return got

    assert [f.seq for f in asyncio.run(main())] == [2]


def test_device_vanishing_mid_frame() -> None:
    hid = FakeHid()
    dev = hid.plug()
    frame = _max_frame()

    async def main() -> tuple[bytes, bool, bool]:
        t = HidTransport(PATH, hid)
        await t.open()
        dev.unit_sends(frame, drop=set(range(4, 9)))  # only the first 4 of 9 reports arrive
        while dev.inbox.qsize():
            await asyncio.sleep(0.01)
        hid.unplug()
        data, closed = await _read_until_closed(t)
        write_refused = False
        try:
            await t.write(b"\x00hello")
        except TransportClosed:
            write_refused = True
        t.close()
        return data, closed, write_refused

    data, closed, write_refused = asyncio.run(main())
    assert closed and write_refused
    assert data == frame[: 4 * CHUNK] and _frames(data) == []  # half a frame never becomes a frame


def test_open_fails_cleanly_when_the_unit_is_gone() -> None:
    hid = FakeHid()

    async def main() -> None:
        await HidTransport(PATH, hid).open()

    with pytest.raises(TransportClosed, match="cannot open HID"):
        asyncio.run(main())


def test_hot_plug() -> None:
    hid = FakeHid()
    monitor = HidMonitor(hid)
    assert monitor.poll() == ([], [])
    hid.plug()
    added, removed = monitor.poll()
    assert [u.path for u in added] == [PATH] and removed == []  # three collections, one unit
    assert monitor.poll() == ([], [])
    hid.unplug()
    added, removed = monitor.poll()
    assert added == [] and [u.path for u in removed] == [PATH]


def test_the_daemons_unit_session_over_hid() -> None:
    """UnitSession (the daemon's) speaks through HidTransport to a unit end at the hidapi boundary."""
    hid = FakeHid()
    dev = hid.plug()
    unit = L.Link()
    out_seq = [0]
    assembler = Reassembler(REPORT_LINK_OUT)

    def on_write(report: bytes) -> None:
        for item in unit.receive(assembler.feed(report), 0):
            if isinstance(item, L.Frame) and item.type == L.HELLO:
                unit.send(L.HELLO, L.encode_json({"proto": 1, "fw": "0.1.0", "board": "pico", "serial": "0ff0"}), 0)
        out = unit.take_output()
        if out:
            out_seq[0] = dev.unit_sends(out, out_seq[0])

    dev.on_write = on_write

    async def main() -> Any:
        session = UnitSession(HidTransport(PATH, hid))
        info = await session.connect(timeout=3)
        session.transport.close()
        return info

    info = asyncio.run(main())
    assert (info.board, info.serial, info.firmware) == ("pico", "0ff0", "0.1.0")


def test_transport_for_each_kind_of_unit() -> None:
    from offhook.transport.discovery import Candidate
    from offhook.transport.hid import transport_for
    from offhook.transport.serial import SerialTransport

    hid = transport_for(Candidate(PATH, "hid", "0ff0", "offhook desk unit (USB HID)", False))
    serial = transport_for(Candidate("/dev/ttyACM0", "usb", "0ff0", "", False))
    assert isinstance(hid, HidTransport) and hid.kind == "hid" and hid.path == PATH
    assert isinstance(serial, SerialTransport) and serial.kind == "serial"
