"""HID_LEDS through the daemon: the unit's report is decoded by UnitSession, folded in by the Desk,
and the STATE the unit gets back carries the HID softphone's call. The unit is the scripted unit on
a real pseudo-terminal (shared link code); the softphone is the real web-softphone adapter with no
page attached (its call is reported as a page would; commands to it fail and say so)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from offhook import config
from offhook import linkproto as L
from offhook.daemon.service import Daemon
from offhook.daemon.unit import UnitLost, UnitSession
from offhook.softphone.web import WebSoftphone
from offhook.transport.serial import SerialTransport
from tests.host.fake_unit import PtyUnit

HID = L.STATE_HID_SOFTPHONE


async def pump_unit(unit: PtyUnit, seconds: float) -> None:
    await asyncio.to_thread(unit.pump, seconds)


def test_unit_session_decodes_hid_leds_and_refuses_a_malformed_one() -> None:
    async def scenario() -> None:
        unit = PtyUnit()
        session = UnitSession(SerialTransport(unit.path))
        pumping = asyncio.create_task(pump_unit(unit, 0.4))
        await session.connect(timeout=2)
        await pumping
        running = asyncio.create_task(session.run())
        unit.send(L.HID_LEDS, L.encode_hid_leds(L.HID_LED_OFF_HOOK | L.HID_LED_MUTE))
        assert await asyncio.wait_for(session.hid_leds.get(), 2) == L.HID_LED_OFF_HOOK | L.HID_LED_MUTE
        bad = unit.send(L.HID_LEDS, b"\x01\x02")
        await pump_unit(unit, 0.3)
        nacks = [L.decode_nack(f.payload) for f in unit.frames if f.type == L.NACK]
        assert [(seq, code) for seq, code, _ in nacks] == [(bad, L.ERR_BAD_PAYLOAD)]
        assert session.hid_leds.empty() and unit.link.pending == 0  # ACKed (it arrived), then refused
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, UnitLost):
            await running
        session.close()
        unit.unplug()

    asyncio.run(asyncio.wait_for(scenario(), 20))


class Rig:
    """The daemon owning the scripted unit; ``notices`` collects its broadcast events by name."""

    def __init__(self, tmp_path: Path, hid_softphone: bool) -> None:
        self.unit = PtyUnit()
        cfg = config.validate({"unit": {"port": self.unit.path}, "softphone": {"hid_softphone": hid_softphone}})
        self.softphone = WebSoftphone()
        self.daemon = Daemon(cfg, self.softphone, tmp_path / "state.json", transport_factory=SerialTransport)
        self.events: list[dict[str, Any]] = []
        self.daemon.listeners.append(self.events.append)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Rig:
        self.task = asyncio.create_task(self.daemon.run())
        pumping = asyncio.create_task(pump_unit(self.unit, 1.0))
        await asyncio.wait_for(self.daemon.unit_connected.wait(), 5)
        await pumping
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.unit.unplug()

    async def hid_leds(self, leds: int) -> tuple[int, int, int, int]:
        """The unit reports HID LEDs; returns the last STATE it got back."""
        self.unit.send(L.HID_LEDS, L.encode_hid_leds(leds))
        await pump_unit(self.unit, 0.3)
        return self.unit.states()[-1]

    async def press(self, button: int) -> list[str]:
        """A short press; the names of the daemon's events it caused."""
        before = len(self.events)
        self.unit.press(button)
        await pump_unit(self.unit, 0.3)
        await asyncio.sleep(0.1)  # a softphone command (failing: no page) reports back
        return [e["event"] for e in self.events[before:]]


def test_the_state_carries_the_hid_softphones_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Rig(tmp_path, hid_softphone=True) as rig:
            assert rig.unit.states()[-1] == (L.CALL_IDLE, L.AGENT_AVAILABLE, HID, 0)
            assert await rig.hid_leds(L.HID_LED_RING) == (L.CALL_RINGING, L.AGENT_AVAILABLE, HID, 0)
            # the agent presses hook: the unit answered over HID; the daemon does not act on it too
            assert await rig.press(L.BUTTON_HOOK) == ["left_to_hid_softphone"]
            assert await rig.hid_leds(L.HID_LED_OFF_HOOK | L.HID_LED_MUTE) == (
                L.CALL_ACTIVE,
                L.AGENT_AVAILABLE,
                HID | L.STATE_MUTED,
                0,
            )
            assert rig.daemon.desk.snapshot()["hid_softphone"] == {"call": "active", "muted": True}
            # our softphone's call rings meanwhile: it wins the lamps
            rig.softphone.report({"event": "incoming", "call": "c1", "peer": "sip:customer@x"})
            await pump_unit(rig.unit, 0.3)
            assert rig.unit.states()[-1] == (L.CALL_RINGING, L.AGENT_AVAILABLE, HID, 0)
            assert await rig.hid_leds(0) == (L.CALL_RINGING, L.AGENT_AVAILABLE, HID, 0)
            # the HID call is over: the hook press is ours again (the daemon asks its softphone to answer)
            assert await rig.press(L.BUTTON_HOOK) == ["command_failed"]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_ringing_hid_softphone_is_call_waiting_beside_our_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Rig(tmp_path, hid_softphone=True) as rig:
            rig.softphone.report({"event": "incoming", "call": "c1", "peer": "sip:customer@x"})
            rig.softphone.report({"event": "established", "call": "c1", "peer": "sip:customer@x"})
            await pump_unit(rig.unit, 0.3)
            assert rig.unit.states()[-1][:2] == (L.CALL_ACTIVE, L.AGENT_ON_CALL)
            state = await rig.hid_leds(L.HID_LED_RING)
            assert state == (L.CALL_ACTIVE, L.AGENT_ON_CALL, HID | L.STATE_CALL_WAITING, 0)
            # hook answers the HID call (the unit's HID report); our customer is not hung up
            assert await rig.press(L.BUTTON_HOOK) == ["left_to_hid_softphone"]

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_without_hid_softphone_configured_the_press_is_ours(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Rig(tmp_path, hid_softphone=False) as rig:
            rig.softphone.report({"event": "incoming", "call": "c1", "peer": "sip:customer@x"})
            rig.softphone.report({"event": "established", "call": "c1", "peer": "sip:customer@x"})
            await pump_unit(rig.unit, 0.3)
            state = await rig.hid_leds(L.HID_LED_RING)
            assert state == (L.CALL_ACTIVE, L.AGENT_ON_CALL, L.STATE_CALL_WAITING, 0)  # lamps folded all the same
            events = await rig.press(L.BUTTON_HOOK)
            assert "left_to_hid_softphone" not in events and "command_failed" in events  # asked to hang up c1

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_reconnected_unit_reports_its_leds_again(tmp_path: Path) -> None:
    """The daemon forgets HID LEDs on a new session: the unit's report after STATE is the truth."""

    async def scenario() -> None:
        async with Rig(tmp_path, hid_softphone=True) as rig:
            await rig.hid_leds(L.HID_LED_OFF_HOOK)
            rig.unit.send(L.HELLO, L.encode_json(rig.unit.hello()))  # the unit reset
            await pump_unit(rig.unit, 0.4)
            assert rig.unit.states()[-1] == (L.CALL_IDLE, L.AGENT_AVAILABLE, HID, 0)

    asyncio.run(asyncio.wait_for(scenario(), 30))
