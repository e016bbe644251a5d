"""Faults on the floor. After each, every call record is in PostgreSQL exactly once, and central's
live state is true within 2 s of the reconnection: kill -9 of `offhook central` mid-traffic, a
broker restart, a PostgreSQL restart, a desk cut off for the length of 50 calls, two centrals."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from tests.floor.rig import Cable, CentralProcess, CentralTask, Mosquitto, Postgres, SinkDesk, count, query, run, until

ACK_TIMEOUT_S = 1.0
SNAPSHOTS: dict[str, dict[str, Any]] = {
    "available": {"agent": "available", "call": "idle", "calls": []},
    "break": {"agent": "break", "call": "idle", "calls": []},
    "on_call": {"agent": "on_call", "call": "active", "calls": [{"state": "active"}]},
    "wrap_up": {"agent": "wrap_up", "call": "idle", "calls": []},
}


def set_status(desk: SinkDesk, status: str) -> None:
    desk.client.event({"event": "state", **SNAPSHOTS[status]})


def live(db: str) -> dict[str, str]:
    return {desk: status for desk, status in query(db, "SELECT desk, status FROM live_state")}


def assert_exactly_once(db: str, desks: list[SinkDesk]) -> None:
    want = sorted(
        (desk.name, str(call_id))
        for desk in desks
        for (call_id,) in desk.recorder.conn.execute("SELECT call_id FROM calls WHERE completed = 1")
    )
    got = sorted((desk, call_id) for desk, call_id in query(db, "SELECT desk, call_id FROM calls"))
    assert got == want, f"{len(got)} records in PostgreSQL, {len(want)} made"
    for desk in desks:  # each desk's cursor has reached its last record
        last = desk.recorder.conn.execute("SELECT max(floor_seq) FROM calls").fetchone()[0]
        assert desk.recorder.floor_acked() == last


async def all_landed(db: str, desks: list[SinkDesk], timeout: float = 20.0) -> None:
    total = sum(desk.calls for desk in desks)
    await until(lambda: count(db) >= total, timeout)
    await until(lambda: all(d.recorder.floor_acked() == d.calls for d in desks), timeout)
    assert_exactly_once(db, desks)


async def traffic(desks: list[SinkDesk], calls: int, every_s: float = 0.01) -> None:
    for _ in range(calls):
        for desk in desks:
            desk.call(hold=desk.calls % 3 == 0)
        await asyncio.sleep(every_s)


@contextlib.asynccontextmanager
async def floor_desks(mqtt: Mosquitto, tmp_path: Path, names: list[str]) -> Any:
    desks = [SinkDesk(mqtt, name, tmp_path, ack_timeout_s=ACK_TIMEOUT_S) for name in names]
    for desk in desks:
        desk.start()
        set_status(desk, "available")
    try:
        yield desks
    finally:
        for desk in desks:
            await desk.stop()


async def state_true_within(db: str, desks: list[SinkDesk], status: str, since: float) -> float:
    """Set every desk to ``status`` (before or during the outage); seconds from ``since`` until central shows it."""
    await until(lambda: all(live(db).get(d.name) == status for d in desks), 10, every=0.02)
    return time.monotonic() - since


def test_kill_9_of_central_mid_traffic(db: str, mqtt: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        central = CentralProcess(mqtt, db)
        central.start()
        try:
            async with floor_desks(mqtt, tmp_path, ["desk-01", "desk-02", "desk-03"]) as desks:
                await until(lambda: len(live(db)) == 3, 15)
                producing = asyncio.create_task(traffic(desks, 40))
                await until(lambda: count(db) >= 20, 10, every=0.005)
                central.kill()
                await producing
                for desk in desks:
                    set_status(desk, "break")
                central.start()
                await until(lambda: "subscribed at" in central.log.read_text(), 15, every=0.01)
                reconnected = time.monotonic()  # the new central is on the broker: its reconnection
                took = await state_true_within(db, desks, "break", reconnected)
                assert took < 2.0, took
                await all_landed(db, desks)
        finally:
            central.stop()

    run(scenario(), 90)


def test_broker_restart(db: str, mqtt: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with CentralTask(mqtt, db), floor_desks(mqtt, tmp_path, ["desk-01", "desk-02"]) as desks:
            await until(lambda: len(live(db)) == 2, 10)
            producing = asyncio.create_task(traffic(desks, 30))
            await asyncio.sleep(0.1)
            mqtt.stop()
            await producing
            for desk in desks:
                set_status(desk, "on_call")
            await asyncio.sleep(0.5)
            mqtt.start()
            started = time.monotonic()
            await until(lambda: all(d.client.connected.is_set() for d in desks), 5)
            reconnected = time.monotonic()
            await state_true_within(db, desks, "on_call", started)
            assert time.monotonic() - reconnected < 2.0
            await all_landed(db, desks)

    run(scenario(), 40)


def test_postgres_restart(db: str, mqtt: Mosquitto, postgres: Postgres, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with CentralTask(mqtt, db), floor_desks(mqtt, tmp_path, ["desk-01", "desk-02"]) as desks:
            await until(lambda: len(live(db)) == 2, 10)
            producing = asyncio.create_task(traffic(desks, 30))
            await asyncio.sleep(0.1)
            await asyncio.to_thread(postgres.stop)
            await producing
            for desk in desks:
                set_status(desk, "wrap_up")
            await asyncio.sleep(0.5)
            await asyncio.to_thread(postgres.start)
            back = time.monotonic()  # the database takes connections again: central reconnects
            assert await state_true_within(db, desks, "wrap_up", back) < 2.0
            await all_landed(db, desks)

    run(scenario(), 40)


def test_a_desk_cut_off_for_50_calls(db: str, mqtt: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Cable(mqtt.port) as cable, CentralTask(mqtt, db), floor_desks(mqtt, tmp_path, ["desk-02"]) as others:
            cut = SinkDesk(mqtt, "desk-01", tmp_path, port=cable.port, ack_timeout_s=ACK_TIMEOUT_S)
            cut.start()
            try:
                cut.call()
                await until(lambda: cut.recorder.floor_acked() == 1, 10)
                cable.cut()  # no DISCONNECT reaches the broker: it publishes the desk's last will
                await until(lambda: query(db, "SELECT online FROM desks WHERE desk = 'desk-01'") == [(False,)], 15)
                await traffic([cut], 50)
                await traffic(others, 5)
                set_status(cut, "break")
                cable.mend()
                await until(lambda: cut.client.connected.is_set(), 5)
                reconnected = time.monotonic()
                await state_true_within(db, [cut], "break", reconnected)
                assert time.monotonic() - reconnected < 2.0
                await all_landed(db, [cut, *others])
                assert query(db, "SELECT online FROM desks WHERE desk = 'desk-01'") == [(True,)]
            finally:
                await cut.stop()

    run(scenario(), 40)


def test_two_centrals_no_duplicates_nothing_missed(db: str, mqtt: Mosquitto, tmp_path: Path) -> None:
    async def scenario() -> None:
        names = ["desk-01", "desk-02", "desk-03", "desk-04"]
        async with (
            CentralTask(mqtt, db, "central-1") as one,
            CentralTask(mqtt, db, "central-2") as two,
            floor_desks(mqtt, tmp_path, names) as desks,
        ):
            await traffic(desks, 40, every_s=0.02)
            await all_landed(db, desks)
            assert one.committed > 0 and two.committed > 0  # the shared subscription split the records
            for desk in desks:
                set_status(desk, "break")
            await until(lambda: all(status == "break" for status in live(db).values()) and len(live(db)) == 4, 5)

    run(scenario(), 40)
