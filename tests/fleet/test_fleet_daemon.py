"""`offhook flash`, `devices` and `identify` beside a running daemon, and their argument checks:
a daemon that refuses this user's token is one line (the other units are still listed), `identify`
borrows the daemon's own unit as `flash` does, a unit named twice is one unit, `--seconds` is sane.

The API server is the real one; where a whole daemon is not needed, a stub stands behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from offhook import config
from offhook.api.server import ApiServer
from offhook.api.tokens import TokenStore
from offhook.cli import main
from offhook.daemon.service import NoUnit
from offhook.fleet import flasher
from offhook.transport import discovery
from offhook.transport.discovery import Candidate

SERIAL = "00000000f1ee7000"
CALL_REFUSAL = "a call or its wrap-up is in progress: try again when the agent is idle"


class StubDaemon:
    """What the API server asks of a daemon for `unit`, `lend_unit` and `identify`; all refused (a call)."""

    def __init__(self, path: str) -> None:
        self.listeners: list[Any] = []
        self.unit = SimpleNamespace(hello={"serial": SERIAL, "board": "sim", "fw": "0.1.0"})
        self.unit_connected = SimpleNamespace(is_set=lambda: True)
        self.unit_path, self.unit_transport = path, "serial"

    async def lend(self, borrower: str) -> None:
        raise NoUnit(CALL_REFUSAL)

    async def identify(self, seconds: float) -> None:  # the daemon blinks its own unit: refused too
        raise NoUnit(CALL_REFUSAL)

    def take_back(self) -> None:
        pass


@contextlib.contextmanager
def api_server(daemon: Any, tokens: TokenStore) -> Iterator[ApiServer]:
    """The real API server on its own event loop thread; this user's config points at it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ApiServer(daemon, tokens, 0)
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
    config.default_config_path().parent.mkdir(parents=True, exist_ok=True)
    config.default_config_path().write_text(f"[api]\nport = {server.port}\n")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def no_daemon() -> None:
    """Point this user's config at a port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config.default_config_path().parent.mkdir(parents=True, exist_ok=True)
    config.default_config_path().write_text(f"[api]\nport = {port}\n")


def fake_units(monkeypatch: pytest.MonkeyPatch, *units: tuple[str, str]) -> None:
    """Discovery finds these (path, serial) units on serial ports."""
    found = [Candidate(path, "usb", serial, "desk unit", True) for path, serial in units]
    monkeypatch.setattr(discovery, "candidates", lambda *args, **kwargs: list(found))


# ------------------------------------------------------------- a daemon that refuses our token


def test_devices_beside_a_daemon_that_refuses_the_token_lists_the_units_it_can_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_units(monkeypatch, ("/dev/ttyACM7", "00000000f1ee7007"))

    async def query(path: str, transport: str = "serial", hid_path: str = "") -> flasher.UnitInfo:
        return flasher.UnitInfo(path=path, serial="00000000f1ee7007", board="pico", fw="0.2.0", health="confirmed")

    monkeypatch.setattr(flasher, "query", query)
    someone_else = TokenStore(tmp_path / "other-runtime", tmp_path / "other-config")  # another user's daemon
    with api_server(StubDaemon("/dev/ttyACM0"), someone_else) as server:
        assert main(["devices", "--json"]) == 0
    out = capsys.readouterr()
    assert [row["serial"] for row in json.loads(out.out)] == ["00000000f1ee7007"]
    assert out.err.count("\n") == 1 and "Traceback" not in out.err
    assert f"127.0.0.1:{server.port}" in out.err and "refused this user's API token" in out.err


# ------------------------------------------------------------- identify and the daemon's unit


def test_identify_is_refused_by_the_daemon_during_a_call_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "ttyACM0")
    fake_units(monkeypatch, (path, SERIAL))
    opened: list[str] = []

    async def identify(path: str, seconds: float) -> flasher.UnitInfo:
        opened.append(path)
        return flasher.UnitInfo(path=path, serial=SERIAL)

    monkeypatch.setattr(flasher, "identify", identify)
    with api_server(StubDaemon(path), TokenStore()):
        assert main(["identify", SERIAL, "--seconds", "1"]) == 1
    err = capsys.readouterr().err
    assert opened == [], "the daemon's port is not opened behind its back"
    assert err == f"offhook: {path}: the daemon keeps the unit: {CALL_REFUSAL}\n"


def test_identify_borrows_the_daemons_unit_and_gives_it_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from offhook.daemon.service import Daemon
    from offhook.sim.unit import SimulatedUnit
    from offhook.softphone.web import WebSoftphone
    from offhook.vm import node_modules_present

    if not node_modules_present():
        pytest.skip("MicroPython VM not installed (make vm)")
    unit = SimulatedUnit(SERIAL, tmp_path / "flash")
    seen: list[int] = []
    unit.on_change = lambda what: seen.append(unit.last_state[2]) if what == "state" and unit.last_state else None

    async def scenario() -> int:
        await unit.start()
        daemon = Daemon(config.validate({"unit": {"port": str(unit.port_link)}}), WebSoftphone(), tmp_path / "s.json")
        task = asyncio.create_task(daemon.run())
        api = ApiServer(daemon, TokenStore(), 0)
        try:
            await asyncio.wait_for(daemon.unit_connected.wait(), 15)
            await api.start()
            config.default_config_path().parent.mkdir(parents=True, exist_ok=True)
            config.default_config_path().write_text(f"[api]\nport = {api.port}\n")
            code = await asyncio.to_thread(main, ["identify", SERIAL, "--seconds", "1"])
            await asyncio.wait_for(daemon.unit_connected.wait(), 15)  # the daemon has its unit back
            return code
        finally:
            await api.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await unit.stop()

    code = asyncio.run(asyncio.wait_for(scenario(), 90))
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"{SERIAL}: blinked for 1 s" in out.out
    blink = seen.index(0x20)  # the identify flag, from offhook identify (the daemon never sets it)
    assert 0 in seen[blink:], "and off again"


# ------------------------------------------------------------- arguments


@pytest.mark.parametrize("seconds", ["0", "0.5", "-3", "601", "1e9", "nan", "inf"])
def test_identify_seconds_outside_1_to_600_is_one_line_and_blinks_nothing(
    seconds: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_units(monkeypatch, (str(tmp_path / "ttyACM0"), SERIAL))
    opened: list[str] = []

    async def identify(path: str, seconds: float) -> flasher.UnitInfo:
        opened.append(path)
        return flasher.UnitInfo(path=path, serial=SERIAL)

    monkeypatch.setattr(flasher, "identify", identify)
    no_daemon()
    assert main(["identify", SERIAL, "--seconds", seconds]) == 2
    err = capsys.readouterr().err
    assert err.startswith("offhook: error: --seconds must be from 1 to 600") and err.count("\n") == 1
    assert opened == []


@pytest.mark.parametrize(
    "which",
    [
        ["--device", SERIAL, "--device", SERIAL.upper()],
        ["--port", "/dev/ttyACM0", "--port", "/dev/ttyACM0"],
    ],
)
def test_a_unit_named_twice_is_flashed_once(
    which: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.fleet import keyring

    fake_units(monkeypatch, ("/dev/ttyACM0", SERIAL), ("/dev/ttyACM1", "00000000f1ee7001"))
    flashed: list[list[str]] = []

    async def flash_all(paths: list[str], bundle: bytes, manifest: dict, *args: Any) -> list[flasher.FlashResult]:
        flashed.append(list(paths))
        return [flasher.FlashResult(unit=SERIAL, path=path, new="1.1.0", result="ok") for path in paths]

    monkeypatch.setattr(flasher, "flash_all", flash_all)
    no_daemon()
    bundle = tmp_path / "fw.ohb"
    bundle.write_bytes(keyring.signed())
    assert main(["flash", str(bundle), *which, "--json"]) == 0
    assert flashed == [["/dev/ttyACM0"]]
    assert len(json.loads(capsys.readouterr().out)) == 1
