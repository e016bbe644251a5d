"""The host's unit session over a real pseudo-terminal (pyserial), with a scripted unit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
from pathlib import Path

import pytest

from offhook import config
from offhook import linkproto as L
from offhook.daemon.service import Daemon
from offhook.daemon.unit import UNIT_MESSAGES_KEPT, UnitLost, UnitSession
from offhook.softphone.web import WebSoftphone
from offhook.transport.serial import SerialTransport
from tests.host.fake_unit import PtyUnit


async def pump_unit(unit: PtyUnit, seconds: float) -> None:
    await asyncio.to_thread(unit.pump, seconds)


async def stop(running: asyncio.Task[None], session: UnitSession, unit: PtyUnit | None = None) -> None:
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError, UnitLost):
        await running
    session.close()
    if unit is not None:
        unit.unplug()


async def connect(unit: PtyUnit) -> UnitSession:
    session = UnitSession(SerialTransport(unit.path))
    pumping = asyncio.create_task(pump_unit(unit, 0.4))
    info = await session.connect(timeout=2)
    await pumping
    assert info.serial == unit.serial and info.board == "pico" and info.proto == 1
    return session


def test_hello_state_and_events_with_duplicates_dropped() -> None:
    async def scenario() -> None:
        unit = PtyUnit()
        session = await connect(unit)
        running = asyncio.create_task(session.run())
        await session.send_state(L.CALL_RINGING, L.AGENT_AVAILABLE, 0, 0)
        await pump_unit(unit, 0.2)
        assert unit.states()[-1] == (L.CALL_RINGING, L.AGENT_AVAILABLE, 0, 0)
        assert session.link.pending == 0  # the unit ACKed it

        seq = unit.press(L.BUTTON_HOOK)
        # The same frame again (as after a lost ACK): delivered once.
        unit.link._output.extend(L.encode_frame(L.EVENT, seq, L.encode_event(0, 1, 5), L.FLAG_ACK_REQUESTED))
        unit.flush()
        event = await asyncio.wait_for(session.events.get(), 2)
        assert (event.button, event.gesture) == (L.BUTTON_HOOK, L.GESTURE_SHORT)
        await asyncio.sleep(0.2)
        assert session.events.empty()
        await stop(running, session, unit)

    asyncio.run(scenario())


def test_a_hello_that_crosses_ours_is_no_answer() -> None:
    """A unit still booting says its boot HELLO but drops what the host sends for longer than
    the host's HELLO retries. connect() waits for the answer to its own HELLO, asking again,
    so no late copy of that HELLO reaches the unit after the STATE (which would blank it)."""

    def booting(unit: PtyUnit, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if select.select([unit.master], [], [], 0.01)[0]:
                os.read(unit.master, 4096)  # not listening yet: the bytes are lost

    async def scenario() -> None:
        unit = PtyUnit()
        session = UnitSession(SerialTransport(unit.path))
        connecting = asyncio.create_task(session.connect(timeout=5))
        unit.send(L.HELLO, L.encode_json(unit.hello()))  # the boot HELLO, crossing the host's
        await asyncio.to_thread(booting, unit, 1.6)  # longer than 5 tries 250 ms apart
        assert not connecting.done()  # a boot HELLO is no answer to ours
        await pump_unit(unit, 0.4)
        info = await asyncio.wait_for(connecting, 2)
        assert info.serial == unit.serial
        running = asyncio.create_task(session.run())
        await session.send_state(L.CALL_RINGING, L.AGENT_AVAILABLE, 0, 0)
        await pump_unit(unit, 1.5)  # long enough for any retransmission still in flight
        types = [frame.type for frame in unit.frames]
        assert L.STATE in types
        assert L.HELLO not in types[types.index(L.STATE) :], types  # nothing after the STATE resets the unit
        assert not session.resync.is_set()
        await stop(running, session, unit)

    asyncio.run(scenario())


def test_garbage_on_the_line_is_survived() -> None:
    async def scenario() -> None:
        unit = PtyUnit()
        session = await connect(unit)
        running = asyncio.create_task(session.run())
        os.write(unit.master, b"\x13\x37garbage\x00\xff\xfe\x00")
        unit.press(L.BUTTON_MUTE)
        event = await asyncio.wait_for(session.events.get(), 2)
        assert event.button == L.BUTTON_MUTE
        await stop(running, session, unit)

    asyncio.run(scenario())


def test_unplug_ends_the_session() -> None:
    async def scenario() -> None:
        unit = PtyUnit()
        session = await connect(unit)
        running = asyncio.create_task(session.run())
        unit.unplug()
        with pytest.raises(UnitLost):  # from the write, or from the reader seeing the port close
            await session.send_state(L.CALL_IDLE, L.AGENT_AVAILABLE, 0, 0)
            await asyncio.wait_for(running, 3)
        await stop(running, session)

    asyncio.run(scenario())


def test_unit_that_stops_acking_is_declared_lost() -> None:
    async def scenario() -> None:
        unit = PtyUnit()
        session = await connect(unit)
        running = asyncio.create_task(session.run())
        unit.answer_acks = False
        await session.send_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, 0, 0)
        pumping = asyncio.create_task(pump_unit(unit, 2.0))
        with pytest.raises(UnitLost, match="did not acknowledge STATE"):
            await asyncio.wait_for(running, 3)
        await pumping
        session.close()
        unit.unplug()

    asyncio.run(scenario())


def test_unit_reset_is_noticed_by_a_second_hello() -> None:
    async def scenario() -> None:
        unit = PtyUnit()
        session = await connect(unit)
        running = asyncio.create_task(session.run())
        unit.serial = "0000000000000042"
        unit.send(L.HELLO, L.encode_json(unit.hello()))
        await asyncio.wait_for(session.resync.wait(), 2)
        assert session.info is not None and session.info.serial == "0000000000000042"
        await stop(running, session, unit)

    asyncio.run(scenario())


def test_silent_port_times_out_with_clear_error() -> None:
    async def scenario() -> None:
        unit = PtyUnit()
        session = UnitSession(SerialTransport(unit.path))
        with pytest.raises(UnitLost, match="no HELLO"):
            await session.connect(timeout=0.5)
        unit.unplug()

    asyncio.run(scenario())


def test_unread_unit_messages_stay_bounded() -> None:
    """The daemon never reads unit_messages (CONFIG, UPDATE_STATUS, NACK): a long session that
    gets many of them keeps only the newest UNIT_MESSAGES_KEPT, instead of growing for its life."""
    sent = UNIT_MESSAGES_KEPT * 3

    def unit_reports(unit: PtyUnit) -> None:
        for seq in range(1000, 1000 + sent):
            payload = L.encode_json({"phase": "verify", "n": seq})
            os.write(unit.master, L.encode_frame(L.UPDATE_STATUS, seq, payload, L.FLAG_ACK_REQUESTED))
            if seq % 16 == 0:
                unit.pump(0.01)  # read the session's ACKs so the pty never fills up
        unit.pump(0.3)

    async def scenario() -> None:
        unit = PtyUnit()
        session = await connect(unit)
        running = asyncio.create_task(session.run())
        await asyncio.to_thread(unit_reports, unit)
        kept = [session.unit_messages.get_nowait() for _ in range(session.unit_messages.qsize())]
        await stop(running, session, unit)
        assert [f.seq for f in kept] == list(range(1000 + sent - UNIT_MESSAGES_KEPT, 1000 + sent))  # the newest

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_the_daemon_waits_for_the_answer_to_its_own_hello(tmp_path: Path) -> None:
    """The same crossing at the daemon: its HELLO lost, the unit's boot HELLO crossing it, then the
    unit deaf for longer than the HELLO's retries. The daemon asks again and sends its STATE only
    after the answer to its own HELLO: one session, no HELLO after the STATE to blank it."""

    def booting(unit: PtyUnit, deaf_s: float) -> None:
        decoder = L.Decoder()
        while not any(isinstance(f, L.Frame) and f.type == L.HELLO for f in decoder.feed(os.read(unit.master, 4096))):
            pass  # the daemon's HELLO: lost, the unit is still booting
        unit.send(L.HELLO, L.encode_json(unit.hello()))  # the boot HELLO, crossing it
        deadline = time.monotonic() + deaf_s
        while time.monotonic() < deadline:
            if select.select([unit.master], [], [], 0.01)[0]:
                os.read(unit.master, 4096)
        unit.pump(1.5)

    async def scenario() -> None:
        unit = PtyUnit()
        cfg = config.validate({"unit": {"port": unit.path}})
        daemon = Daemon(cfg, WebSoftphone(), tmp_path / "state.json", transport_factory=SerialTransport)
        sessions: list[bool] = []
        daemon.listeners.append(lambda m: sessions.append(m["connected"]) if m["event"] == "unit" else None)
        unit_side = asyncio.create_task(asyncio.to_thread(booting, unit, 1.6))
        running = asyncio.create_task(daemon.run())
        await unit_side
        assert daemon.unit_connected.is_set() and daemon.unit is not None and daemon.unit.serial == unit.serial
        types = [frame.type for frame in unit.frames]
        assert L.STATE in types and L.HELLO not in types[types.index(L.STATE) :], types
        assert sessions == [True]  # the crossing cost no session
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        unit.unplug()

    asyncio.run(asyncio.wait_for(scenario(), 20))
