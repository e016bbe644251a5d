"""Daemon end to end: a unit on a pseudo-terminal, the daemon, real baresip instances.

The unit here is scripted with the shared link code at the transport boundary; the
same flows with the real firmware on the simulated unit follow with the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offhook import config
from offhook import linkproto as L
from offhook.daemon.service import Daemon
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from offhook.softphone.base import EventKind, SoftphoneEvent
from tests.host.fake_unit import PtyUnit

State = tuple[int, int, int, int]


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[dict[str, BaresipInstance]]:
    started = {}
    try:
        for name in ("agent", "customer", "supervisor"):
            started[name] = BaresipInstance(name, tmp_path).start()
        yield started
    finally:
        for instance in started.values():
            instance.stop()


class Rig:
    def __init__(self, phones: dict[str, BaresipInstance], tmp_path: Path, **timers: float) -> None:
        self.phones = phones
        self.unit = PtyUnit()
        cfg = config.validate(
            {
                "unit": {"port": self.unit.path},
                "softphone": {
                    "baresip_ctrl": f"127.0.0.1:{phones['agent'].ctrl_port}",
                    "supervisor": phones["supervisor"].uri,
                    "consult_timeout_s": 5,
                },
                "timers": {"wrap_up_s": 1, **timers},
            }
        )
        self.records: list[str] = []
        self.daemon = Daemon(
            cfg,
            BaresipAdapter(port=phones["agent"].ctrl_port),
            tmp_path / "state.json",
            recorder=lambda record: self.records.append(record.moment),
        )
        self.customer = BaresipAdapter(port=phones["customer"].ctrl_port)
        self.supervisor = BaresipAdapter(port=phones["supervisor"].ctrl_port)

    async def wait_state(self, wanted: Callable[[State], bool], timeout: float = 3.0) -> State:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.to_thread(self.unit.pump, 0.05)
            states = self.unit.states()
            if states and wanted(states[-1]):
                return states[-1]
        raise AssertionError(f"unit never showed the wanted state; last: {self.unit.states()[-3:]}")

    async def answer_call(self) -> None:
        """The customer calls; the unit's hook button answers; both sides see the call up."""
        await self.customer.command("dial", self.phones["agent"].uri)
        await self.wait_state(lambda s: s[0] == L.CALL_RINGING)
        await self.press(L.BUTTON_HOOK)
        await event(self.customer, EventKind.ESTABLISHED)
        await self.wait_state(lambda s: s[0] == L.CALL_ACTIVE)  # the agent's side knows it too

    async def press(self, button: int, gesture: int = L.GESTURE_SHORT) -> None:
        self.unit.press(button, gesture)
        await asyncio.to_thread(self.unit.pump, 0.02)


async def event(adapter: BaresipAdapter, kind: EventKind) -> SoftphoneEvent:
    while True:
        got = await asyncio.wait_for(adapter.events.get(), 5)
        if got.kind is kind:
            return got


async def started(rig: Rig) -> asyncio.Task[Any]:
    task = asyncio.create_task(rig.daemon.run())
    for adapter in (rig.customer, rig.supervisor):
        await adapter.start()
        await asyncio.wait_for(adapter.connected.wait(), 5)
    await rig.wait_state(lambda s: s[1] == L.AGENT_AVAILABLE)
    await asyncio.wait_for(rig.daemon.softphone.connected.wait(), 5)  # type: ignore[attr-defined]
    return task


async def finish(rig: Rig, task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for adapter in (rig.customer, rig.supervisor):
        await adapter.stop()
    rig.unit.unplug()


def test_answer_mute_hold_hangup_wrap_up(phones: dict[str, BaresipInstance], tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(phones, tmp_path)
        task = await started(rig)
        await rig.customer.command("dial", phones["agent"].uri)
        await rig.wait_state(lambda s: s[0] == L.CALL_RINGING)

        await rig.press(L.BUTTON_HOOK)
        await event(rig.customer, EventKind.ESTABLISHED)
        await rig.wait_state(lambda s: s[:2] == (L.CALL_ACTIVE, L.AGENT_ON_CALL))

        await rig.press(L.BUTTON_MUTE)
        await rig.wait_state(lambda s: bool(s[2] & L.STATE_MUTED))
        (call,) = rig.daemon.softphone.calls.values()
        assert call.muted is True  # baresip's own reply confirmed it
        await rig.press(L.BUTTON_MUTE)
        await rig.wait_state(lambda s: not s[2] & L.STATE_MUTED)

        await rig.press(L.BUTTON_HOLD)
        await rig.wait_state(lambda s: s[0] == L.CALL_HELD)
        await rig.press(L.BUTTON_HOLD)
        await rig.wait_state(lambda s: s[0] == L.CALL_ACTIVE)

        await rig.press(L.BUTTON_HOOK)
        await event(rig.customer, EventKind.CLOSED)
        await rig.wait_state(lambda s: s[:2] == (L.CALL_IDLE, L.AGENT_WRAP_UP))
        await rig.wait_state(lambda s: s[1] == L.AGENT_AVAILABLE, timeout=3)
        assert rig.records == ["ringing", "answered", "hold_started", "hold_ended", "hung_up", "wrap_up_ended"]
        await finish(rig, task)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_escalate_reaches_supervisor(phones: dict[str, BaresipInstance], tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(phones, tmp_path)
        task = await started(rig)
        await rig.answer_call()

        await rig.press(L.BUTTON_ESCALATE)
        consult = await event(rig.supervisor, EventKind.INCOMING)  # the agent consults first
        assert consult.peer == phones["agent"].uri
        await rig.wait_state(lambda s: bool(s[2] & L.STATE_CONSULT))
        await rig.supervisor.answer(consult.call_id)
        # Supervisor answered: consult leg ends, the customer is transferred and rings again.
        transferred = await event(rig.supervisor, EventKind.INCOMING)
        assert transferred.peer == phones["customer"].uri
        await rig.supervisor.answer(transferred.call_id)
        await event(rig.supervisor, EventKind.ESTABLISHED)
        assert "escalated" in rig.records and "transferred" in rig.records
        await finish(rig, task)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_ring_no_answer_goes_on_break_and_leaves_call_ringing(
    phones: dict[str, BaresipInstance], tmp_path: Path
) -> None:
    async def scenario() -> None:
        rig = Rig(phones, tmp_path, ring_timeout_s=5)
        task = await started(rig)
        await rig.customer.command("dial", phones["agent"].uri)
        await rig.wait_state(lambda s: s[0] == L.CALL_RINGING)
        await rig.wait_state(lambda s: s[1] == L.AGENT_BREAK, timeout=7)
        assert rig.records == ["ringing", "missed"]
        # Still ringing at the customer: the product never rejects by itself.
        assert [c.state.value for c in rig.customer.calls.values()] == ["outgoing"]
        await rig.press(L.BUTTON_STATE)  # back to available... once the call is dealt with
        await finish(rig, task)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_daemon_restart_mid_call_resynchronises(phones: dict[str, BaresipInstance], tmp_path: Path) -> None:
    async def scenario() -> None:
        rig = Rig(phones, tmp_path)
        task = await started(rig)
        await rig.answer_call()
        await rig.press(L.BUTTON_MUTE)
        await rig.wait_state(lambda s: bool(s[2] & L.STATE_MUTED))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

        # A new daemon (same state file): the call is found, and the mute this daemon confirmed
        # for this very Call-ID is shown as confirmed (persisted per Call-ID).
        again = Daemon(rig.daemon.config, BaresipAdapter(port=phones["agent"].ctrl_port), tmp_path / "state.json")
        restarted_at = time.monotonic()
        task = asyncio.create_task(again.run())
        state = await rig.wait_state(lambda s: s[0] == L.CALL_ACTIVE, timeout=3)
        assert state[2] & L.STATE_MUTED and not state[2] & L.STATE_MUTE_UNCONFIRMED
        assert time.monotonic() - restarted_at < 1.5
        rig.daemon = again
        await finish(rig, task)

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_mute_reaches_the_audio_path_first_then_follows_the_softphone(
    phones: dict[str, BaresipInstance], tmp_path: Path
) -> None:
    """The daemon mutes offhook's audio path (a datagram to `offhook audio run`) at once, then
    keeps it on the state the softphone confirmed."""
    import socket

    from offhook.audio.control import request_mute

    control = tmp_path / "audio.sock"
    pipeline = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # stands in for the audio process
    pipeline.bind(str(control))
    pipeline.settimeout(3)

    async def scenario() -> None:
        rig = Rig(phones, tmp_path)
        rig.daemon.audio_mute = lambda muted: request_mute(muted, control)
        task = await started(rig)
        await rig.answer_call()
        await rig.press(L.BUTTON_MUTE)
        assert await asyncio.to_thread(pipeline.recv, 16) == b"mute"  # before baresip's reply
        await rig.wait_state(lambda s: bool(s[2] & L.STATE_MUTED))
        assert await asyncio.to_thread(pipeline.recv, 16) == b"mute"  # and on its confirmation
        await rig.press(L.BUTTON_MUTE)
        assert await asyncio.to_thread(pipeline.recv, 16) == b"unmute"
        await finish(rig, task)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        pipeline.close()
