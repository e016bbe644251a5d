"""The whole product on one machine: real firmware (simulated unit) + daemon + real baresip."""

from __future__ import annotations

import asyncio
from pathlib import Path

from offhook.softphone.base import EventKind
from tests.integration.desk_rig import Desk


def run(coro) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(asyncio.wait_for(coro, 120))


def test_call_answer_hold_mute_escalate_from_the_unit(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Desk(tmp_path) as desk:
            await desk.wait_lamps({"hook": "off", "status": "solid:green"})  # idle, available
            await desk.customer_calls()
            await desk.wait_lamps({"hook": "moving"})  # ring pulse

            await desk.unit.press("hook")
            await desk.event(desk.customer, EventKind.ESTABLISHED)
            await desk.wait_lamps({"hook": "solid", "mute": "off", "status": "solid:red"})  # active call
            (call,) = desk.daemon.softphone.calls.values()  # type: ignore[union-attr]

            await desk.unit.press("mute")
            await desk.wait_lamps({"mute": "solid"})
            assert call.muted is True  # the LED follows what baresip confirmed
            await desk.unit.press("mute")
            await desk.wait_lamps({"mute": "off"})

            await desk.unit.press("hold")
            await desk.wait_lamps({"hold": "moving", "hook": "solid"})  # blink amber, dim green
            assert desk.daemon.softphone.calls[call.call_id].held  # type: ignore[union-attr]
            await desk.unit.press("hold")
            await desk.wait_lamps({"hold": "off"})

            await desk.unit.press("escalate")
            consult = await desk.event(desk.supervisor, EventKind.INCOMING)
            await desk.wait_lamps({"escalate": "solid", "hold": "moving"})  # consult in progress
            await desk.supervisor.answer(consult.call_id)  # type: ignore[union-attr]
            transferred = await desk.event(desk.supervisor, EventKind.INCOMING)
            assert transferred.peer == desk.lines["customer"].uri  # the customer, handed over
            await desk.supervisor.answer(transferred.call_id)  # type: ignore[union-attr]
            await desk.wait_lamps({"hook": "off", "escalate": "off", "status": "moving:yellow/amber"})  # wrap-up
            await desk.wait_lamps({"status": "solid:green"}, timeout=6)  # available after the timer
            assert desk.records[:2] == ["ringing", "answered"]
            assert "escalated" in desk.records and "transferred" in desk.records

    run(scenario())


def test_hang_up_then_wrap_up_then_available(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Desk(tmp_path) as desk:
            await desk.answer_call()
            await desk.wait_lamps({"hook": "solid"})
            await desk.unit.press("hook")
            await desk.event(desk.customer, EventKind.CLOSED)
            await desk.wait_lamps({"hook": "off", "status": "moving:yellow/amber"})
            await desk.wait_lamps({"status": "solid:green"}, timeout=6)

    run(scenario())


def test_unplug_replug_and_daemon_restart_mid_call_show_the_truth_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Desk(tmp_path) as desk:
            await desk.answer_call()
            await desk.unit.press("mute")
            await desk.wait_lamps({"hook": "solid", "mute": "solid"})

            # How fast the truth is back is measured in `make bench` (bench_sim); here: that it is.
            await desk.unit.unplug()
            await desk.unit.replug()
            await desk.wait_lamps({"hook": "solid", "mute": "solid", "status": "solid:red"})

            await desk.stop_daemon()
            await desk.start_daemon()
            # The restarted daemon shows the mute it confirmed for this very call (kept per SIP
            # Call-ID): solid, not flagged unconfirmed.
            assert desk.daemon is not None
            while desk.daemon.desk.awaiting_snapshot:
                await asyncio.sleep(0.02)
            assert desk.daemon.desk.muted is True and not desk.daemon.desk.mute_unconfirmed
            await desk.wait_lamps({"hook": "solid", "mute": "solid", "status": "solid:red"})
            assert desk.customer.calls  # type: ignore[union-attr]  # nobody hung up on the customer

    run(scenario())


def test_baresip_killed_mid_call_then_restarted(tmp_path: Path) -> None:
    """The softphone crashes: the call is gone there, so the unit must stop showing it; when
    baresip is back the daemon reconnects on its own and the next call works."""

    async def scenario() -> None:
        async with Desk(tmp_path) as desk:
            await desk.answer_call()
            await desk.wait_lamps({"hook": "solid"})
            desk.lines["agent"].kill()
            await asyncio.to_thread(desk.lines["agent"].start)  # same ports, empty call list
            await desk.wait_lamps({"hook": "off"}, timeout=10)  # the call is no more: wrap-up
            assert "hung_up" in desk.records
            await desk.wait_lamps({"status": "solid:green"}, timeout=8)
            await desk.customer_calls()  # and the restarted softphone takes the next call
            await desk.wait_lamps({"hook": "moving"}, timeout=8)

    run(scenario())
