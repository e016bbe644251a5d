"""A desk's side of a rollout with a real daemon and a simulated unit (the firmware on the MicroPython
VM): central's update message (as RolloutService makes it) arrives during a call; the daemon
downloads the bundle from central's bundle handler over PostgreSQL only when the desk is idle,
checks it and updates the unit; each phase goes back as an update_status body that central's
checker accepts. A cancel drops an update still queued."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web

from offhook import bundle as B
from offhook import config
from offhook.daemon.service import Daemon
from offhook.floor import pgstore
from offhook.floor import rollouts as R
from offhook.floor.desk_updates import DeskUpdates
from offhook.softphone.web import WebSoftphone
from offhook.transport.serial import SerialTransport
from tests.fleet import simfleet
from tests.fleet.test_daemon_updates import fleet_key  # noqa: F401  (the fixture)


def test_an_update_from_central_waits_for_the_call_then_reaches_the_unit(
    db: str,
    tmp_path: Path,
    fleet_key: Path,  # noqa: F811
) -> None:
    data = simfleet.sim_bundle()
    sha = B.sha256_hex(data)

    async def scenario() -> tuple[list[dict[str, Any]], str]:
        conn = await pgstore.connect(db)
        await pgstore.migrate(conn)
        await conn.commit()
        await conn.close()
        with psycopg.connect(db, autocommit=True) as sync:
            R.create(sync, R.Spec("canary", simfleet.NEW, "sim", sha, canary=1), data)
            R.create(sync, R.Spec("later", "9.9.9", "sim", "ab" * 32), b"x")
        app = web.Application()
        app.router.add_get("/bundles/{sha256}", R.bundle_handler(db))
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with simfleet.units(tmp_path, 1) as (unit,):
            cfg = config.validate({"unit": {"port": str(unit.port_link)}, "timers": {"wrap_up_s": 1}})
            phone = WebSoftphone()
            daemon = Daemon(cfg, phone, tmp_path / "state.json", transport_factory=SerialTransport)
            sent: list[dict[str, Any]] = []
            desk = DeskUpdates(daemon.updates, base, tmp_path / "cache", sent.append, tz="Europe/Paris")
            daemon.listeners.append(desk.on_event)
            task = asyncio.create_task(daemon.run())
            try:
                await asyncio.wait_for(daemon.unit_connected.wait(), 20)
                phone.report({"event": "incoming", "call": "c1", "peer": "sip:customer@x"})
                phone.report({"event": "established", "call": "c1", "peer": "sip:customer@x"})
                await asyncio.sleep(0.3)
                rollout = R.Rollout(R.Spec("canary", simfleet.NEW, "sim", sha))
                _, body = R.update_message(rollout, R.Dispatch("hq/d1"))
                desk.on_update(body)
                desk.on_update(body)  # the retained message again (a reconnection): one update
                # another rollout's update, cancelled before it could start
                later = {"rollout": "later", "sha256": "ab" * 32, "version": "9.9.9", "url": f"/bundles/{'ab' * 32}"}
                desk.on_update(later)
                desk.on_update({"rollout": "later", "cancel": True})
                await asyncio.sleep(1.5)
                assert [m["phase"] for m in sent if m["rollout"] == "canary"] == ["queued"], "nothing during the call"
                assert not (tmp_path / "cache" / f"{sha}.part").exists(), "not even the download"
                phone.report({"event": "closed", "call": "c1"})
                job = daemon.updates.jobs[0]
                await asyncio.wait_for(job.done.wait(), 90)
                return sent, daemon.unit.fw if daemon.unit else ""
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await runner.cleanup()

    sent, fw = asyncio.run(asyncio.wait_for(scenario(), 180))
    canary = [m["phase"] for m in sent if m["rollout"] == "canary"]
    assert canary[:3] == ["queued", "downloading", "verified"] and canary[-1] == "confirmed", canary
    assert "receiving" in canary
    assert [(m["phase"], m["reason"]) for m in sent if m["rollout"] == "later"] == [
        ("queued", ""),
        ("failed", "cancelled"),
    ]
    assert fw == simfleet.NEW
    for body in sent:
        assert R.check_status(body)["tz"] == "Europe/Paris"
