"""Central's IT page for floor-wide settings: the view and the change, by role, checked like the CLI
(real Mosquitto, PostgreSQL and central with HTTPS)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.floor.rig import CentralTask, Mosquitto, SinkDesk, query, run, until
from tests.floor.webrig import client_ssl, get, make_token, web_for


def test_the_it_page_shows_and_changes_settings_and_refuses_bad_values(
    db: str, mqtt: Mosquitto, tmp_path: Path
) -> None:
    async def scenario() -> None:
        task = CentralTask(mqtt, db)
        web = web_for(task.central, mqtt, db)
        async with task:
            await asyncio.wait_for(web.ready.wait(), 10)
            it = {"Authorization": f"Bearer {make_token(db, 'it', 'it desk')}"}
            lead = {"Authorization": f"Bearer {make_token(db, 'supervisor', 'floor lead')}"}
            desk = SinkDesk(mqtt, "desk-01", tmp_path)
            desk.start()
            base = f"https://localhost:{web.port}"
            try:
                await until(lambda: query(db, "SELECT 1 FROM desks WHERE desk = 'desk-01'") == [(1,)], 10)
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(mqtt))) as http:

                    async def post(body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
                        async with http.post(f"{base}/api/settings", json=body, headers=headers) as answer:
                            return answer.status, await answer.json()

                    status, page = await get(http, f"{base}/settings", headers=it)
                    assert status == 200 and 'id="effective"' in page
                    assert (await get(http, f"{base}/settings", headers=lead))[0] == 403
                    assert (await get(http, f"{base}/api/settings", headers=lead))[0] == 403
                    change = {"layer": "team", "target": "blue", "set": {"wrap_up_s": 60}}
                    assert (await post(change, lead))[0] == 403
                    for bad, message in [
                        ({"wrap_up_s": "long"}, "timers.wrap_up_s must be a number"),
                        ({"coffee_s": 1}, "unknown key 'coffee_s'"),
                        ({"button_map": ["none", "mute", "hold", "escalate", "state", "vol_up", "vol_down"]}, "hook"),
                    ]:
                        status, body = await post({**change, "set": bad}, it)
                        assert status == 400 and message in body["error"], body
                    assert query(db, "SELECT count(*) FROM settings") == [(0,)]
                    status, body = await post(change, it)
                    assert status == 200 and body["version"] == 1
                    status, view = await get(http, f"{base}/api/settings?desk=desk-01", headers=it)
                    assert status == 200 and view["team"] == "blue" and view["central_version"] == 1
                    assert view["policy"]["layers"] == {"team": {"wrap_up_s": 60}}
                    status, every = await get(http, f"{base}/api/settings", headers=it)
                    assert every["rows"] == [
                        {"layer": "team", "target": "blue", "key": "wrap_up_s", "value": 60, "locked": False}
                    ]
                    status, body = await post({"layer": "team", "target": "blue", "unset": ["wrap_up_s"]}, it)
                    assert status == 200 and body == {"version": 2, "removed": 1}
                    assert (await get(http, f"{base}/api/settings?desk=nobody", headers=it))[0] == 404
            finally:
                await desk.stop()

    run(scenario(), 60)
