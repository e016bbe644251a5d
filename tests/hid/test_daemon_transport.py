"""The daemon reaches its unit over the transport `[unit] transport` asks for: a HID-only unit over
its vendor reports (HELLO, the full STATE, a button press acted on), "serial" ignoring HID-only
units, "hid" refusing a unit without HID by name, "auto" preferring the serial port of a unit that
has both. Fakes sit only at the hidapi boundary (tests/hid/test_transport.py's FakeHid) and
pyserial's port list; serial units are the scripted unit on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from serial.tools import list_ports

from offhook import config
from offhook import linkproto as L
from offhook.api.client import daemon_unit
from offhook.api.server import ApiServer
from offhook.api.tokens import TokenStore
from offhook.cli import main
from offhook.daemon.service import Daemon, NoUnit, Route, route
from offhook.hidframe import REPORT_LINK_OUT, REPORT_SIZE, Reassembler
from offhook.softphone.web import WebSoftphone
from offhook.transport.discovery import Candidate, candidates
from offhook.transport.hid import HidTransport
from tests.hid.test_devices import BOTH, HID_ONLY, HID_ONLY_PATH, _plug, _port
from tests.hid.test_transport import PATH, FakeDevice, FakeHid
from tests.host.fake_unit import PtyUnit


class HidUnitEnd:
    """A unit's end of the link behind a fake HID device: answers HELLO, ACKs, keeps what the host
    sent and sends button EVENTs, all in vendor reports. Writes arrive on the transport's worker
    thread and presses from the test's: one lock for the link."""

    def __init__(self, dev: FakeDevice, serial: str) -> None:
        self.dev = dev
        self.serial = serial
        self.link = L.Link()
        self.assembler = Reassembler(REPORT_LINK_OUT)
        self.frames: list[L.Frame] = []
        self.lock = threading.Lock()
        self.out_seq = 0
        dev.on_write = self.on_write

    def on_write(self, report: bytes) -> None:
        with self.lock:
            for item in self.link.receive(self.assembler.feed(report), 0):
                if isinstance(item, L.Frame):
                    self.frames.append(item)
                    if item.type == L.HELLO:
                        hello = {"proto": 1, "fw": "0.1.0", "board": "pico", "serial": self.serial, "caps": ["usb_hid"]}
                        self.link.send(L.HELLO, L.encode_json(hello), 0)
            self._flush()

    def press(self, button: int) -> None:
        with self.lock:
            self.link.send(L.EVENT, L.encode_event(button, L.GESTURE_SHORT, 1234), 0)
            self._flush()

    def _flush(self) -> None:
        out = self.link.take_output()
        if out:
            self.out_seq = self.dev.unit_sends(out, self.out_seq)

    def states(self) -> list[tuple[int, int, int, int]]:
        with self.lock:
            return [L.decode_state(f.payload) for f in self.frames if f.type == L.STATE]

    def hellos(self) -> int:
        with self.lock:
            return sum(f.type == L.HELLO for f in self.frames)


def make_daemon(
    tmp_path: Path, hid: FakeHid, mode: str, discovered: list[bool] | None = None, port: str = ""
) -> Daemon:
    def discover(*, hid: bool) -> list[Candidate]:
        if discovered is not None:
            discovered.append(hid)
        return candidates(tmp_path / "sims", hid=hid, hid_module=fake)

    fake = hid
    cfg = config.validate({"unit": {"transport": mode, "port": port}})
    return Daemon(
        cfg,
        WebSoftphone(),
        tmp_path / "state.json",
        discover=discover,
        hid_transport_factory=lambda path: HidTransport(path, fake),
    )


@contextlib.asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def pumped(unit: PtyUnit) -> Iterator[PtyUnit]:
    """The pty unit answers the host in the background (HELLO, ACKs)."""
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            unit.pump(0.05)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield unit
    finally:
        stop.set()
        thread.join(2)
        unit.unplug()


async def until(check: Any, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_hid_only_unit_is_reached_over_hid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hid = FakeHid()
    dev = _plug(hid, HID_ONLY_PATH, HID_ONLY)
    unit = HidUnitEnd(dev, HID_ONLY)
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    monkeypatch.setitem(sys.modules, "hid", hid)  # for `offhook devices` (import hid)

    async def scenario() -> list[dict[str, Any]]:
        daemon = make_daemon(tmp_path, hid, "auto")
        async with running(daemon):
            await asyncio.wait_for(daemon.unit_connected.wait(), 5)
            assert (daemon.unit_transport, daemon.unit_path) == ("hid", HID_ONLY_PATH)
            assert daemon.unit is not None and daemon.unit.serial == HID_ONLY
            await until(lambda: unit.states())
            assert unit.states() == [(L.CALL_IDLE, L.AGENT_AVAILABLE, 0, 0)]  # the full STATE
            # a press over HID is acted on (idle: state toggles break), and the new STATE goes back
            unit.press(L.BUTTON_STATE)
            await until(lambda: len(unit.states()) == 2)
            assert unit.states()[-1][:2] == (L.CALL_IDLE, L.AGENT_BREAK)
            assert daemon.desk.agent == L.AGENT_BREAK and unit.link.pending == 0  # the EVENT was ACKed
            assert dev.written and all(len(r) == REPORT_SIZE and r[0] == REPORT_LINK_OUT for r in dev.written)

            api = ApiServer(daemon, TokenStore(), 0)
            await api.start()
            try:
                answer = await daemon_unit(api.port)
                assert answer is not None
                assert (answer["transport"], answer["path"], answer["serial"]) == ("hid", HID_ONLY_PATH, HID_ONLY)
                config.default_config_path().parent.mkdir(parents=True, exist_ok=True)
                config.default_config_path().write_text(f"[api]\nport = {api.port}\n")
                written = len(dev.written)
                assert await asyncio.to_thread(main, ["devices", "--json"]) == 0
                assert len(dev.written) == written  # the daemon's unit is described, not opened again
            finally:
                await api.stop()
        return list(json.loads(capsys.readouterr().out))

    rows = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert [(r["serial"], r["transport"], r["path"]) for r in rows] == [(HID_ONLY, "hid (daemon)", HID_ONLY_PATH)]


def test_a_configured_port_in_hid_mode_is_a_hid_device_path(tmp_path: Path) -> None:
    hid = FakeHid()
    end = HidUnitEnd(_plug(hid, HID_ONLY_PATH, HID_ONLY), HID_ONLY)
    discovered: list[bool] = []

    async def scenario() -> None:
        daemon = make_daemon(tmp_path, hid, "hid", discovered, port=HID_ONLY_PATH)
        async with running(daemon):
            await asyncio.wait_for(daemon.unit_connected.wait(), 5)
            assert (daemon.unit_transport, daemon.unit_path) == ("hid", HID_ONLY_PATH)
            await until(lambda: end.states())

    asyncio.run(asyncio.wait_for(scenario(), 15))
    assert discovered == []  # the configured port skips discovery


def test_serial_mode_ignores_a_hid_only_unit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    hid = FakeHid()
    dev = _plug(hid, HID_ONLY_PATH, HID_ONLY)
    HidUnitEnd(dev, HID_ONLY)
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    discovered: list[bool] = []

    async def scenario() -> None:
        daemon = make_daemon(tmp_path, hid, "serial", discovered)
        async with running(daemon):
            await asyncio.sleep(0.8)
            assert not daemon.unit_connected.is_set()

    with caplog.at_level(logging.INFO, logger="offhook.daemon.service"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    assert discovered and not any(discovered)  # no HID enumeration at all
    assert dev.written == []
    assert "no desk unit found" in caplog.text


def test_hid_mode_names_a_unit_without_hid_and_keeps_retrying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    serial = "E6614C311B7A8E2F"
    hid = FakeHid()  # no HID unit at all
    unit = PtyUnit(serial=serial)
    monkeypatch.setattr(list_ports, "comports", lambda: [_port(unit.path, serial, 0x2E8A, 0x0005)])

    async def scenario() -> None:
        daemon = make_daemon(tmp_path, hid, "hid")
        async with running(daemon):
            await asyncio.sleep(1.0)
            assert not daemon.unit_connected.is_set()

    with pumped(unit), caplog.at_level(logging.INFO, logger="offhook.daemon.service"):
        asyncio.run(asyncio.wait_for(scenario(), 10))
    refusals = [r.getMessage() for r in caplog.records if "has no USB HID interface" in r.getMessage()]
    assert len(refusals) >= 2 and "retrying" in refusals[0]  # a NoUnit like any other: retried
    assert serial in refusals[0] and unit.path in refusals[0]
    assert unit.frames == []  # its serial port was never opened


def test_auto_uses_the_serial_port_of_a_unit_on_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hid = FakeHid()
    twin = _plug(hid, PATH, BOTH)
    HidUnitEnd(twin, BOTH)
    unit = PtyUnit(serial=BOTH)
    monkeypatch.setattr(list_ports, "comports", lambda: [_port(unit.path, BOTH)])

    async def scenario() -> None:
        daemon = make_daemon(tmp_path, hid, "auto")
        async with running(daemon):
            await asyncio.wait_for(daemon.unit_connected.wait(), 5)
            assert (daemon.unit_transport, daemon.unit_path) == ("serial", unit.path)
            await until(lambda: unit.states())

    with pumped(unit):
        asyncio.run(asyncio.wait_for(scenario(), 15))
    assert unit.states()[0] == (L.CALL_IDLE, L.AGENT_AVAILABLE, 0, 0)
    assert twin.written == []  # its HID interface was left alone


def test_hid_mode_on_a_unit_on_both_lends_it_by_its_serial_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Mode "hid" talks through the HID interface, but the unit is still its serial port for fleet tools
    (`offhook devices`, lending): lending closes the HID transport and names the port; taking it back
    reconnects over HID."""
    hid = FakeHid()
    twin = _plug(hid, PATH, BOTH)
    end = HidUnitEnd(twin, BOTH)
    unit = PtyUnit(serial=BOTH)
    monkeypatch.setattr(list_ports, "comports", lambda: [_port(unit.path, BOTH)])
    monkeypatch.setitem(sys.modules, "hid", hid)  # for `offhook devices` (import hid)

    async def scenario() -> None:
        daemon = make_daemon(tmp_path, hid, "hid")
        async with running(daemon):
            await asyncio.wait_for(daemon.unit_connected.wait(), 5)
            assert (daemon.unit_transport, daemon.unit_path) == ("hid", unit.path)
            assert daemon.session is not None
            transport = daemon.session.transport
            assert isinstance(transport, HidTransport) and transport.path == PATH
            await until(lambda: end.states())
            api = ApiServer(daemon, TokenStore(), 0)
            await api.start()
            try:
                config.default_config_path().parent.mkdir(parents=True, exist_ok=True)
                config.default_config_path().write_text(f"[api]\nport = {api.port}\n")
                assert await asyncio.to_thread(main, ["devices", "--json"]) == 0
            finally:
                await api.stop()
            rows = json.loads(capsys.readouterr().out)
            assert [(r["transport"], r["path"], r["hid_path"]) for r in rows] == [
                ("serial+hid (daemon: hid)", unit.path, PATH)
            ]
            path, info = await daemon.lend("flash")
            assert (path, info.serial) == (unit.path, BOTH) and daemon.session is None
            hellos = end.hellos()
            daemon.take_back()
            await asyncio.wait_for(daemon.unit_connected.wait(), 5)
            assert end.hellos() == hellos + 1 and daemon.unit_transport == "hid"

    with pumped(unit):
        asyncio.run(asyncio.wait_for(scenario(), 15))
    assert unit.frames == []  # the serial port stayed free for the borrower


ACM = "/dev/ttyACM0"


@pytest.mark.parametrize(
    ("mode", "unit", "expected"),
    [
        ("auto", Candidate(ACM, "usb", BOTH, "", True, PATH), Route("serial", ACM, ACM)),
        ("hid", Candidate(ACM, "usb", BOTH, "", True, PATH), Route("hid", PATH, ACM)),
        ("auto", Candidate(PATH, "hid", HID_ONLY, "", True), Route("hid", PATH, PATH)),
        ("serial", Candidate("/tmp/sim", "sim", "SIM1", "", True), Route("serial", "/tmp/sim", "/tmp/sim")),
    ],
)
def test_route(mode: str, unit: Candidate, expected: Route) -> None:
    assert route(mode, unit) == expected


def test_route_refuses_what_the_mode_cannot_reach() -> None:
    with pytest.raises(NoUnit, match="SIM1 at /tmp/sim has no USB HID interface"):
        route("hid", Candidate("/tmp/sim", "sim", "SIM1", "", True))
    with pytest.raises(NoUnit, match="USB HID only"):
        route("serial", Candidate(PATH, "hid", HID_ONLY, "", True))
