"""`offhook flash` against simulated units (the real firmware on the MicroPython VM, journaled
flash, throttled link): twenty at once, a crashing release rolled back, power cuts sampled
during an update, safe mode, rejections with the old version still running."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from offhook.fleet import build, flasher
from tests.fleet import keyring, simfleet

pytestmark = pytest.mark.usefixtures("_needs_vm")


@pytest.fixture
def _needs_vm() -> None:
    from offhook.vm import node_modules_present

    if not node_modules_present():
        pytest.skip("MicroPython VM not installed (make vm)")


def _flash(paths: list[str], data: bytes, parallel: int = 20, retries: int = 0) -> list[flasher.FlashResult]:
    return asyncio.run(flasher.flash_all(paths, data, build.peek_manifest(data), parallel, retries))


def test_twenty_units_in_parallel_all_report_the_new_version(tmp_path: Path) -> None:
    data = simfleet.sim_bundle()

    async def scenario() -> tuple[list, list]:
        async with simfleet.units(tmp_path, 20) as fleet:
            paths = [str(unit.port_link) for unit in fleet]
            results = await flasher.flash_all(paths, data, build.peek_manifest(data), parallel=20, retries=1)
            infos = await asyncio.gather(*(flasher.query(path) for path in paths))
            return results, infos

    results, infos = asyncio.run(scenario())
    assert [r.result for r in results] == ["ok"] * 20, [(r.unit, r.reason) for r in results if r.result != "ok"]
    assert {(r.old, r.new) for r in results} == {("0.1.0", simfleet.NEW)}
    assert {(i.fw, i.health, i.slot) for i in infos} == {(simfleet.NEW, "confirmed", "a")}
    assert len({i.serial for i in infos}) == 20


def test_crashing_release_is_rolled_back_after_three_boots(tmp_path: Path) -> None:
    data = simfleet.sim_bundle("0.3.0", crash=True)

    async def scenario() -> tuple:
        async with simfleet.units(tmp_path, 1) as (unit,):
            (result,) = await flasher.flash_all([str(unit.port_link)], data, build.peek_manifest(data), 1, 0)
            info = await flasher.query(str(unit.port_link))
            return result, info, unit.boots, json.loads((unit.flash_dir / "files/boot_state.json").read_text())

    result, info, boots, state = asyncio.run(scenario())
    assert result.result == "failed" and result.reason.startswith("rolled back to 0.1.0: rolled back from slot a")
    assert (info.fw, info.slot, info.health) == ("0.1.0", "factory", "confirmed")
    assert boots == 5, "1 first boot + 3 tries of the bad slot + 1 rolled back"
    assert state["rolled_back"] == "a" and state["active"] == "factory"


@pytest.mark.parametrize("name", ["wrong key", "downgrade", "flipped bit in /offhook_fw/app.mpy"])
def test_rejected_bundle_reason_and_old_version_still_running(tmp_path: Path, name: str) -> None:
    good = simfleet.sim_bundle()
    if name == "wrong key":
        manifest = build.peek_manifest(good)
        files = build.read_bundle(good, int(keyring.n_hex(0), 16), "sim")[1]
        data = build.build_bundle(files, manifest["version"], "sim", keyring.key(1))
        reason = "bad signature"
    elif name == "downgrade":
        files = build.read_bundle(good, int(keyring.n_hex(0), 16), "sim")[1]
        data = build.build_bundle(files, "0.0.9", "sim", keyring.key(0))
        reason = "downgrade refused"
    else:
        data = keyring.flip(good, keyring.file_offsets(good)["/offhook_fw/app.mpy"] + 100)
        reason = "sha256 mismatch in /offhook_fw/app.mpy"

    async def scenario() -> tuple:
        async with simfleet.units(tmp_path, 1) as (unit,):
            (result,) = await flasher.flash_all([str(unit.port_link)], data, build.peek_manifest(data), 1, 0)
            await unit.power_cycle()
            return result, await flasher.query(str(unit.port_link))

    result, info = asyncio.run(scenario())
    assert result.result == "failed" and reason in result.reason
    assert (info.fw, info.slot) == ("0.1.0", "factory")


@pytest.mark.parametrize(
    "cut", [2, 30, 53, *(pytest.param(n, marks=pytest.mark.slow) for n in (0, 9, 20, 40, 47, 49, 51))]
)
def test_power_cut_during_an_update_on_the_vm_never_bricks(tmp_path: Path, cut: int) -> None:
    """Sampled journal cut points (the CPython sweep covers every one); then power comes back."""
    data = simfleet.sim_bundle()

    async def scenario() -> flasher.UnitInfo:
        async with simfleet.units(tmp_path, 1) as (unit,):
            await unit.cut_power_after(cut)
            flash = asyncio.create_task(flasher.flash_all([str(unit.port_link)], data, build.peek_manifest(data), 1, 0))
            await asyncio.wait({flash}, timeout=3)  # the unit may reboot into the new slot meanwhile
            flash.cancel()
            await asyncio.gather(flash, return_exceptions=True)
            await unit.power_cycle()  # power back: the flash is what reached it before the cut
            await asyncio.sleep(0.3)
            return await flasher.query(str(unit.port_link))

    info = asyncio.run(scenario())
    assert not info.error, info
    assert (info.fw, info.slot) in {("0.1.0", "factory"), (simfleet.NEW, "a")}, info


def test_safe_mode_answers_hello_and_takes_an_update(tmp_path: Path) -> None:
    data = simfleet.sim_bundle()

    async def scenario() -> tuple:
        async with simfleet.units(tmp_path, 1, held=(2,)) as (unit,):
            before = await flasher.query(str(unit.port_link))
            unit.held_at_boot = ()  # released: the next boot runs the new slot
            (result,) = await flasher.flash_all([str(unit.port_link)], data, build.peek_manifest(data), 1, 0)
            return before, result, await flasher.query(str(unit.port_link))

    before, result, after = asyncio.run(scenario())
    assert before.safe_mode and before.slot == "safe"
    assert result.result == "ok", result.reason
    assert (after.fw, after.slot, after.safe_mode) == (simfleet.NEW, "a", False)


def test_new_slot_confirms_itself_with_no_host(tmp_path: Path) -> None:
    """A unit may go to a desk with only a HID softphone: nobody speaks the link after the reset."""
    data = simfleet.sim_bundle()

    async def scenario() -> dict:
        async with simfleet.units(tmp_path, 1) as (unit,):
            phases: list[str] = []
            flash = flasher.Flasher(
                str(unit.port_link), data, build.peek_manifest(data), lambda *a: phases.append(a[3])
            )
            task = asyncio.create_task(flash.run(0))
            while "rebooting" not in phases:
                await asyncio.sleep(0.05)
            task.cancel()  # the host goes away as the unit resets
            await asyncio.gather(task, return_exceptions=True)
            state_file = unit.flash_dir / "files/boot_state.json"
            for _ in range(100):
                state = json.loads(state_file.read_text())
                if state.get("confirmed"):
                    break
                await asyncio.sleep(0.1)
            return state

    state = asyncio.run(scenario())
    assert (state["active"], state["confirmed"], state["version"]) == ("a", True, simfleet.NEW)


def test_key_rotation_reaches_the_safe_mode_loader(tmp_path: Path) -> None:
    rotate = build.build_bundle(simfleet.sim_files("0.2.0"), "0.2.0", "sim", keyring.key(0), new_key=keyring.n_hex(1))
    old_key = build.build_bundle(simfleet.sim_files("0.3.0"), "0.3.0", "sim", keyring.key(0))
    new_key = build.build_bundle(simfleet.sim_files("0.3.0"), "0.3.0", "sim", keyring.key(1))

    async def scenario() -> tuple:
        async with simfleet.units(tmp_path, 1) as (unit,):
            path = str(unit.port_link)

            async def flash(data: bytes) -> flasher.FlashResult:
                return (await flasher.flash_all([path], data, build.peek_manifest(data), 1, 0))[0]

            rotated = await flash(rotate)
            keystore = json.loads((unit.flash_dir / "files/keys.json").read_text())
            unit.held_at_boot = (2,)  # safe mode: the loader reads the same key store
            await unit.power_cycle()
            unit.held_at_boot = ()  # released once booted: the update's reset boots the new slot
            refused = await flash(old_key)
            accepted = await flash(new_key)
            return rotated, keystore, refused, accepted, await flasher.query(path)

    rotated, keystore, refused, accepted, info = asyncio.run(scenario())
    assert rotated.result == "ok" and keystore == {"n": keyring.n_hex(1)}
    assert refused.result == "failed" and "bad signature" in refused.reason and refused.old == "0.2.0"
    assert accepted.result == "ok", accepted.reason
    assert (info.fw, info.slot, info.health) == ("0.3.0", "b", "confirmed")
