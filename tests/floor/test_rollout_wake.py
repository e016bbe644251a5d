"""When central's rollout runner ticks: a desk's report that ends its update wakes it at once (a stage's
end is seen then, not up to a poll later), and after a stage it sleeps no longer than the soak has
left, so the next stage starts when the soak ends. Over a real PostgreSQL (tests/floor/rig.py)."""

from __future__ import annotations

import asyncio

from offhook.floor import pgstore
from tests.fleet import keyring
from tests.floor.test_rollout_central import _floor, clocked_service


def test_an_ended_update_wakes_the_runner_and_the_soak_end_is_its_next_round(db: str) -> None:
    data = keyring.signed(version="1.2.0")
    _floor(db, data, canary=1, wave_percent=100)  # soak 30 s
    service, sent, now = clocked_service(db)

    async def scenario() -> None:
        conn = await pgstore.connect(db)
        await conn.set_autocommit(True)
        try:
            await service.round(conn)
            assert [t for t, _ in sent] == ["hq/d1"]
            assert service.wait_s() == service.poll_s, "nothing due sooner"
            service.report("hq", "d1", {"rollout": "r1", "phase": "receiving", "percent": 40})
            assert not service.woken.is_set(), "progress is no news to the planner"
            service.report("hq", "d1", {"rollout": "r1", "phase": "confirmed", "percent": 100})
            assert service.woken.is_set(), "an update that ended may end its stage"
            await service.round(conn)
            assert not service.woken.is_set()
            assert [(t, b.get("prefetch")) for t, b in sent[1:]] == [("hq/d2", True), ("hq/d3", True)]
            now[0] += 29.8
            assert abs(service.wait_s() - 0.2) < 1e-6, "the soak ends before the next poll"
            now[0] += 0.2
            assert service.wait_s() == 0.0
            await service.round(conn)
            assert [t for t, b in sent if "prefetch" not in b] == ["hq/d1", "hq/d2", "hq/d3"], (
                "the next stage at the soak's end"
            )
            assert service.wait_s() == service.poll_s
        finally:
            await conn.close()

    asyncio.run(scenario())
