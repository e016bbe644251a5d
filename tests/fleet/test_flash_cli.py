"""`offhook flash`, `offhook devices` and `offhook identify` as IT runs them, against simulated
units found through discovery (their event loop runs in a thread, as `offhook sim` would)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from offhook.cli import main
from offhook.fleet import build
from offhook.sim.unit import SimulatedUnit
from tests.fleet import keyring, simfleet


class Bench:
    def __init__(self, tmp: Path, count: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._units = simfleet.units(tmp, count)
        self.units: list[SimulatedUnit] = self.call(self._units.__aenter__())

    def call(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.call(self._units.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    from offhook.vm import node_modules_present

    if not node_modules_present():
        pytest.skip("MicroPython VM not installed (make vm)")
    b = Bench(tmp_path, 2)
    yield b
    b.close()


def test_flash_all_json_then_devices(bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "fw.ohb"
    bundle.write_bytes(simfleet.sim_bundle())
    assert main(["flash", str(bundle), "--all", "--parallel", "2", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert sorted(r["unit"] for r in results) == sorted(u.serial for u in bench.units)
    assert {(r["old"], r["new"], r["result"]) for r in results} == {("0.1.0", simfleet.NEW, "ok")}

    assert main(["devices", "--json"]) == 0
    devices = json.loads(capsys.readouterr().out)
    assert {(d["serial"], d["board"], d["fw"], d["slot"], d["health"], d["transport"]) for d in devices} == {
        (u.serial, "sim", simfleet.NEW, "a", "confirmed", "sim") for u in bench.units
    }

    # Flashing the same bundle again: nothing to do, still success.
    assert main(["flash", str(bundle), "--device", bench.units[0].serial, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["result"] == "up to date"


def test_failed_unit_gives_exit_1_and_a_reason(
    bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = simfleet.sim_bundle()
    files = build.read_bundle(good, int(keyring.n_hex(0), 16), "sim")[1]
    bundle = tmp_path / "other-key.ohb"
    bundle.write_bytes(build.build_bundle(files, "0.2.0", "sim", keyring.key(1)))
    assert main(["flash", str(bundle), "--device", bench.units[1].serial]) == 1
    out = capsys.readouterr().out
    assert "failed" in out and "bad signature" in out and "0.1.0 → 0.2.0" in out


def test_usage_errors_exit_2(bench: Bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "fw.ohb"
    bundle.write_bytes(simfleet.sim_bundle())
    assert main(["flash", str(bundle), "--device", "ffffffffffffffff"]) == 2
    (tmp_path / "junk.ohb").write_bytes(b"junk")
    assert main(["flash", str(tmp_path / "junk.ohb"), "--all"]) == 2
    assert main(["identify", "ffffffffffffffff"]) == 2
    assert "no unit with serial" in capsys.readouterr().err


def test_identify_blinks_the_unit(bench: Bench, capsys: pytest.CaptureFixture[str]) -> None:
    unit = bench.units[0]
    seen: list[tuple[int, int, int, int] | None] = []
    unit.on_change = lambda what: seen.append(unit.last_state) if what == "state" else None
    assert main(["identify", unit.serial, "--seconds", "1"]) == 0
    flags = [state[2] for state in seen if state]
    assert flags[:2] == [0x20, 0], "identify flag on, then off"
    assert unit.serial in capsys.readouterr().out


def test_identify_a_unit_unplugged_after_discovery_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from offhook.commands import flash

    gone = str(tmp_path / "ttyACM-gone")
    monkeypatch.setattr(flash, "_units", lambda serials: [(gone, "serial", serials[0])])
    assert main(["identify", "00000000f1ee7000", "--seconds", "1"]) == 1
    err = capsys.readouterr().err
    assert gone in err and "Traceback" not in err
