"""Central's web side without a browser: HTTPS with init's certificate, roles, sessions, refusals,
the inventory (API and CLI) and the token CLI, against real Mosquitto and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from offhook.floor import auth
from offhook.floor.web import COOKIE
from tests.floor.rig import REPO_ROOT, CentralTask, Mosquitto, SinkDesk, run, until
from tests.floor.webrig import OFFHOOK, client_ssl, get, make_token, web_for


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OFFHOOK, "central", *args], capture_output=True, text=True, cwd=REPO_ROOT)


def test_no_token_is_refused_everywhere_but_the_login_page(db: str, mqtt: Mosquitto) -> None:
    async def scenario() -> None:
        task = CentralTask(mqtt, db)
        web = web_for(task.central, mqtt, db)
        async with task:
            await asyncio.wait_for(web.ready.wait(), 10)
            base = f"https://localhost:{web.port}"
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(mqtt))) as anon:
                status, page = await get(anon, f"{base}/login")
                assert status == 200 and 'type="password"' in page
                assert (await get(anon, f"{base}/static/wallboard.js"))[0] == 200
                assert (await get(anon, f"{base}/wallboard"))[0] == 302
                assert (await get(anon, f"{base}/"))[0] == 302
                for path in ("/api/live", "/api/inventory", "/api/me"):
                    assert (await get(anon, base + path))[0] == 401, path
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await anon.ws_connect(f"{base.replace('https', 'wss')}/ws/wallboard")
                assert refused.value.status == 401
                # Not served without TLS.
                with pytest.raises(aiohttp.ClientError):
                    await get(anon, f"http://localhost:{web.port}/login")

    run(scenario(), 60)


def test_supervisor_it_wrong_and_revoked_tokens(
    db: str, mqtt: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []

    async def scenario() -> None:
        task = CentralTask(mqtt, db)
        web = web_for(task.central, mqtt, db, recheck_s=0.3)
        async with task:
            await asyncio.wait_for(web.ready.wait(), 10)
            base = f"https://localhost:{web.port}"
            supervisor = make_token(db, auth.SUPERVISOR, "floor lead")
            it = make_token(db, auth.IT, "it desk")
            secrets.extend([supervisor, it])
            desk = SinkDesk(mqtt, "desk-01", tmp_path)
            desk.start()
            try:
                desk.client.event({"event": "state", "agent": "available", "call": "idle", "calls": []})
                unit = {"serial": "0ff0514d00000001", "board": "pico2", "firmware": "1.4.0", "slot": "a"}
                desk.client.event({"event": "unit", "connected": True}, unit | {"health": "ok", "transport": "serial"})
                ssl_context = client_ssl(mqtt)
                # A wrong token: refused at login and as a bearer.
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as s:
                    async with s.post(f"{base}/api/login", json={"token": "ofh_" + "x" * 43}) as answer:
                        assert answer.status == 401 and COOKIE not in answer.cookies
                    status, _ = await get(s, f"{base}/api/live", headers={"Authorization": "Bearer ofh_wrong"})
                    assert status == 401
                    async with s.post(f"{base}/api/login", data="not json") as answer:
                        assert answer.status == 400

                # The supervisor: live state and figures; not the inventory, nor its page.
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as s:
                    async with s.post(f"{base}/api/login", json={"token": supervisor}) as answer:
                        assert answer.status == 200 and (await answer.json())["home"] == "/wallboard"
                        cookie = answer.headers["Set-Cookie"]
                    assert all(flag in cookie for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"))
                    assert supervisor not in cookie
                    await until(lambda: ("hq", "desk-01") in web.board.tiles, 10)
                    status, live = await get(s, f"{base}/api/live")
                    assert status == 200 and [t["status"] for t in live["tiles"]] == ["available"]
                    assert (await get(s, f"{base}/api/live?team=red"))[1]["tiles"] == []
                    assert (await get(s, f"{base}/api/inventory"))[0] == 403
                    assert (await get(s, f"{base}/inventory"))[0] == 403
                    assert (await get(s, f"{base}/wallboard"))[0] == 200
                    async with s.ws_connect(f"{base.replace('https', 'wss')}/ws/wallboard") as ws:
                        first = json.loads((await ws.receive()).data)
                        assert first["type"] == "snapshot" and first["tiles"][0]["id"] == "hq/desk-01"
                        desk.client.event({"event": "state", "agent": "break", "call": "idle", "calls": []})
                        pushed = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                        while pushed["type"] != "tile":
                            pushed = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                        assert pushed["tile"]["status"] == "break"
                        # Revoked: the open WebSocket is closed (4401), the session and token refused.
                        result = await asyncio.to_thread(cli, "token", "revoke", "floor lead", "--db", db)
                        assert result.returncode == 0, result.stderr
                        closing = await asyncio.wait_for(_closed(ws), 5)
                        assert closing == 4401
                    assert (await get(s, f"{base}/api/live"))[0] == 401
                    status, _ = await get(s, f"{base}/api/live", headers={"Authorization": f"Bearer {supervisor}"})
                    assert status == 401
                    async with s.post(f"{base}/api/login", json={"token": supervisor}) as answer:
                        assert answer.status == 401

                # IT: the inventory (with its unit), not the live state.
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as s:
                    bearer = {"Authorization": f"Bearer {it}"}
                    assert (await get(s, f"{base}/api/live", headers=bearer))[0] == 403

                    async def inventory() -> Any:
                        status, body = await get(s, f"{base}/api/inventory", headers=bearer)
                        assert status == 200
                        return body if body["units"] and body["units"][0]["serial"] else None

                    await until(inventory, 10)
                    body = await inventory()
                    unit_row = body["units"][0]
                    assert (unit_row["serial"], unit_row["desk"], unit_row["firmware"]) == (
                        "0ff0514d00000001",
                        "desk-01",
                        "1.4.0",
                    )
                    assert unit_row["online"] and unit_row["connected"] and unit_row["last_seen"] > 0
            finally:
                await desk.stop()

    run(scenario(), 60)
    assert secrets and all(secret not in caplog.text for secret in secrets)


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    async for _ in ws:
        pass
    return ws.close_code


def test_token_and_inventory_commands(db: str, mqtt: Mosquitto, tmp_path: Path) -> None:
    made = cli("token", "create", "--role", "it", "--name", "night IT", "--db", db)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("ofh_") and secret not in made.stderr
    listed = cli("token", "list", "--json", "--db", db)
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"], r["revoked_at"]) for r in rows] == [("night IT", "it", None)]
    assert secret not in listed.stdout
    assert cli("token", "create", "--role", "admin", "--name", "x", "--db", db).returncode == 2
    assert cli("token", "revoke", "nobody", "--db", db).returncode == 1
    assert cli("token", "revoke", "night IT", "--db", db).returncode == 0
    assert json.loads(cli("token", "list", "--json", "--db", db).stdout)[0]["revoked_at"] is not None

    async def scenario() -> None:
        async with CentralTask(mqtt, db):
            desk = SinkDesk(mqtt, "desk-02", tmp_path)
            desk.start()
            try:
                unit = {"serial": "0ff0514d00000002", "board": "pico2", "firmware": "1.5.0", "slot": "b"}
                desk.client.event({"event": "unit", "connected": True}, unit | {"health": "ok", "transport": "hid"})
                await until(lambda: '"serial": "0ff0514d00000002"' in cli("inventory", "--json", "--db", db).stdout)
            finally:
                await desk.stop()

    run(scenario(), 60)
    table = cli("inventory", "--db", db)
    assert table.returncode == 0 and "0ff0514d00000002" in table.stdout and "1.5.0" in table.stdout
    assert table.stdout.rstrip().endswith("1 units")
