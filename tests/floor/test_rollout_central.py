"""Central's rollout runner over a real PostgreSQL (tests/floor/rig.py): a canary of 1, then the rest
after the soak, a pinned team skipped, desks' reports kept; a halt on a failed canary; the bundle
served by its sha256 with Range, and a cut download resumed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web

from offhook import bundle as B
from offhook.floor import pgstore
from offhook.floor import rollouts as R
from tests.fleet import keyring

DESKS = [("hq", "d1", "blue"), ("hq", "d2", "blue"), ("hq", "d3", "blue"), ("hq", "d4", "red")]


def _floor(db: str, data: bytes, **spec: Any) -> None:
    async def migrated() -> None:
        conn = await pgstore.connect(db)
        await pgstore.migrate(conn)
        await conn.commit()
        await conn.close()

    asyncio.run(migrated())
    with psycopg.connect(db, autocommit=True) as conn:
        for site, desk, team in DESKS:
            conn.execute("INSERT INTO desks (site, desk, team, online) VALUES (%s, %s, %s, true)", (site, desk, team))
            conn.execute(
                "INSERT INTO inventory (site, desk, run, seq, serial, board, firmware, slot, health, transport,"
                " connected, ts) VALUES (%s, %s, 1, 1, %s, 'pico', '1.1.0', 'a', 'confirmed', 'serial', true, 0)",
                (site, desk, f"serial-{desk}"),
            )
        R.pin(conn, "red", "1.1.0")
        base = {"name": "r1", "version": "1.2.0", "board": "pico", "sha256": B.sha256_hex(data), "soak_s": 30.0}
        R.create(conn, R.Spec(**{**base, **spec}), data)


def clocked_service(db: str) -> tuple[R.RolloutService, list[tuple[str, dict]], list[float]]:
    """Central's rollout runner on a clock the test moves (``now[0]``), publishing into ``sent``."""
    sent: list[tuple[str, dict]] = []
    now = [1000.0]
    return R.RolloutService(db, lambda topic, body: sent.append((topic, body)), clock=lambda: now[0]), sent, now


def test_a_canary_of_one_then_the_rest_and_a_pinned_team_skipped(db: str) -> None:
    data = keyring.signed(version="1.2.0")
    _floor(db, data, canary=1, wave_percent=100)
    service, sent, now = clocked_service(db)

    async def scenario() -> None:
        conn = await pgstore.connect(db)
        await conn.set_autocommit(True)
        try:
            await service.round(conn)
            assert [t for t, _ in sent] == ["hq/d1"]
            assert sent[0][1] == {
                "rollout": "r1",
                "sha256": B.sha256_hex(data),
                "version": "1.2.0",
                "board": "pico",
                "url": f"/bundles/{B.sha256_hex(data)}",
            }
            service.report("hq", "d1", {"rollout": "r1", "phase": "receiving", "percent": 40, "tz": "Europe/Paris"})
            await service.round(conn)
            assert len(sent) == 1, "the canary has not ended"
            service.report("hq", "d1", {"rollout": "r1", "phase": "confirmed", "percent": 100})
            await service.round(conn)
            now[0] += 29
            await service.round(conn)
            # Soaking: the next stage only fetches the bundle ahead, once.
            assert [(t, b.get("prefetch")) for t, b in sent[1:]] == [("hq/d2", True), ("hq/d3", True)]
            now[0] += 2
            await service.round(conn)
            assert [t for t, b in sent if "prefetch" not in b] == ["hq/d1", "hq/d2", "hq/d3"], "the rest; red is pinned"
            for desk in ("d2", "d3"):
                service.report("hq", desk, {"rollout": "r1", "phase": "confirmed", "percent": 100})
            service.report("hq", "d9", {"rollout": "r1", "phase": "bogus"})  # dropped
            await service.round(conn)
            now[0] += 31
            await service.round(conn)
        finally:
            await conn.close()

    asyncio.run(scenario())
    with psycopg.connect(db, autocommit=True) as conn:
        (row,) = R.status(conn)
    assert (row["status"], row["stage"], row["done"], row["targeted"]) == ("complete", 2, 3, 3)
    assert row["skipped"] == {"hq/d4": "team red is pinned to 1.1.0"}
    assert service.tz == {"hq/d1": "Europe/Paris"}


def test_a_failed_canary_halts_and_abort_cancels_what_waits(db: str) -> None:
    data = keyring.signed(version="1.2.0")
    _floor(db, data, canary=2, max_failed_percent=10)
    sent: list[tuple[str, dict]] = []
    service = R.RolloutService(db, lambda topic, body: sent.append((topic, body)), clock=lambda: 0.0)

    async def scenario() -> None:
        conn = await pgstore.connect(db)
        await conn.set_autocommit(True)
        try:
            await service.round(conn)
            assert [t for t, _ in sent] == ["hq/d1", "hq/d2"]
            service.report("hq", "d1", {"rollout": "r1", "phase": "rolled back", "reason": "health"})
            service.report("hq", "d2", {"rollout": "r1", "phase": "queued"})
            await service.round(conn)
            with psycopg.connect(db, autocommit=True) as sync:
                assert R.status(sync)[0]["status"] == "halted"
                R.control(sync, "r1", "abort")
            await service.round(conn)
        finally:
            await conn.close()

    asyncio.run(scenario())
    assert sent[2:] == [("hq/d2", {"rollout": "r1", "cancel": True})]


def test_the_bundle_by_its_sha256_with_range_and_a_resumed_download(db: str, tmp_path: Path) -> None:
    data = keyring.signed(version="1.2.0")
    _floor(db, data)
    sha = B.sha256_hex(data)

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/bundles/{sha256}", R.bundle_handler(db))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/bundles/{sha}"
        try:
            part = tmp_path / f"{sha}.part"
            part.write_bytes(data[:1000])  # a download cut after 1000 bytes
            assert await R.fetch_bundle(url, sha, part) == data
            part.write_bytes(b"x" * 1000)  # a part file that is not the bundle's start
            with pytest.raises(R.RolloutError, match="does not match its sha256"):
                await R.fetch_bundle(url, sha, part)
            assert not part.exists()
            assert await R.fetch_bundle(url, sha, part) == data  # from scratch
            with pytest.raises(R.RolloutError, match="HTTP 404"):
                await R.fetch_bundle(url.replace(sha, "0" * 64), "0" * 64, tmp_path / "none.part")
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    assert R.byte_range("bytes=10-19", 100) == (10, 20)
    assert R.byte_range("bytes=100-", 100) is None


def test_a_desk_fetches_ahead_and_its_update_then_asks_central_for_nothing(db: str, tmp_path: Path) -> None:
    from types import SimpleNamespace

    from offhook.daemon.updates import UpdateRelay
    from offhook.floor.desk_updates import DeskUpdates

    data = keyring.signed(version="1.2.0")
    _floor(db, data)
    sha = B.sha256_hex(data)
    asked: list[str] = []

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        asked.append(request.path)
        return await handler(request)

    async def scenario() -> bytes:
        app = web.Application(middlewares=[count])
        app.router.add_get("/bundles/{sha256}", R.bundle_handler(db))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            owner = SimpleNamespace(unit=None, session=None)
            relay = UpdateRelay(owner, lambda: False, lambda message: None)  # type: ignore[arg-type]
            desk = DeskUpdates(relay, f"http://127.0.0.1:{runner.addresses[0][1]}", tmp_path, lambda body: None)
            rollout = R.Rollout(R.Spec("r1", "1.2.0", "pico", sha))
            _, ahead = R.update_message(rollout, R.Prefetch("hq/d1"))
            desk.on_update(ahead)
            desk.on_update(ahead)  # the retained message again: one download
            assert relay.jobs == [], "only fetched: nothing is queued for the unit"
            await asyncio.wait_for(desk.prefetching[sha], 10)
            assert asked == [f"/bundles/{sha}"] and (tmp_path / f"{sha}.part").read_bytes() == data
            _, update = R.update_message(rollout, R.Dispatch("hq/d1"))
            desk.on_update(update)
            assert [job.source for job in relay.jobs] == ["r1"]
            fetch = relay.jobs[0].fetch
            assert fetch is not None
            return await fetch()
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario()) == data
    assert asked == [f"/bundles/{sha}"], "the update took the bundle fetched ahead: no second request"
