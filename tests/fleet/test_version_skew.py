"""The current host with the previous firmware release. The first release's signed bundle is kept
as a fixture (tests/fleet/fixtures: the bundle and its public key; the throwaway private key was
never saved), so from the second release on this proves the host still works with it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from offhook import bundle as B
from offhook.fleet import build, flasher
from offhook.sim.unit import SimulatedUnit
from tests.fleet import keyring, simfleet

FIXTURES = Path(__file__).parent / "fixtures"
PREVIOUS = FIXTURES / "offhook-0.1.0-sim.ohb"
PREVIOUS_KEY = (FIXTURES / "offhook-0.1.0-sim.pub.hex").read_text().strip()


def test_current_host_reads_and_verifies_the_previous_bundle() -> None:
    manifest, files = build.read_bundle(PREVIOUS.read_bytes(), B.key_modulus(PREVIOUS_KEY), "sim")
    assert manifest["version"] == "0.1.0" and "/offhook_fw/app.mpy" in files


def test_current_host_flashes_and_talks_to_the_previous_firmware(tmp_path: Path) -> None:
    from offhook.vm import node_modules_present

    if not node_modules_present():
        pytest.skip("MicroPython VM not installed (make vm)")
    data = PREVIOUS.read_bytes()
    other = simfleet.sim_bundle()  # signed with a key this unit does not trust

    async def scenario() -> tuple:
        unit = SimulatedUnit("00000000000c0de1", tmp_path / "unit", key_hex=PREVIOUS_KEY)
        unit.held_at_boot = (2,)  # safe mode: the loader takes the previous release into slot a
        await unit.start()
        try:
            path = str(unit.port_link)
            unit.held_at_boot = ()
            (installed,) = await flasher.flash_all([path], data, build.peek_manifest(data), 1, 0)
            info = await flasher.query(path)
            (refused,) = await flasher.flash_all([path], other, build.peek_manifest(other), 1, 0)
            return installed, info, refused, await flasher.query(path)
        finally:
            await unit.stop()

    installed, info, refused, after = asyncio.run(scenario())
    assert installed.result == "ok", installed.reason
    assert (info.fw, info.slot, info.health, info.board) == ("0.1.0", "a", "confirmed", "sim")
    assert refused.result == "failed" and "bad signature" in refused.reason and refused.old == "0.1.0"
    assert (after.fw, after.slot) == ("0.1.0", "a")
    assert keyring.n_hex(0) != PREVIOUS_KEY


def test_previous_firmware_ignores_the_recording_flags(tmp_path: Path) -> None:
    """A host that records sends STATE flags the 0.1.0 firmware predates (recording, paused,
    failed): it ACKs them and draws the plain active-call scene, the status lamp steady red."""
    from offhook import linkproto as L
    from offhook.transport.serial import SerialTransport
    from offhook.unitlink import UnitLink
    from offhook.vm import node_modules_present

    if not node_modules_present():
        pytest.skip("MicroPython VM not installed (make vm)")
    data = PREVIOUS.read_bytes()
    recording = L._STATE_RECORDING | L._STATE_RECORDING_PAUSED | L._STATE_RECORDING_FAILED

    async def scenario() -> tuple:
        unit = SimulatedUnit("00000000000c0de2", tmp_path / "unit", key_hex=PREVIOUS_KEY)
        unit.held_at_boot = (2,)
        await unit.start()
        try:
            path = str(unit.port_link)
            unit.held_at_boot = ()
            (installed,) = await flasher.flash_all([path], data, build.peek_manifest(data), 1, 0)
            seen = []
            for flags in (0, recording, L._STATE_RECORDING):
                link = UnitLink(SerialTransport(path), retry_ms=flasher.RETRY_MS, max_tries=flasher.MAX_TRIES)
                info = await link.connect(5)
                async with link.running():
                    await link.send_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, flags, 0)
                    acked = await link.until(lambda link=link: not link.link.pending, 3)
                    await asyncio.sleep(0.5)
                link.close()
                seen.append((info.fw, acked, unit.led_map()))
            return installed, seen
        finally:
            await unit.stop()

    installed, seen = asyncio.run(scenario())
    assert installed.result == "ok", installed.reason
    plain = seen[0][2]
    assert plain["hook"] > 0 and plain["status_r"] > 0 and plain["status_g"] == plain["status_b"] == 0
    for fw, acked, leds in seen:
        assert fw == "0.1.0" and acked
        assert leds == plain  # the unknown bits change nothing on the old unit
