"""Rollouts through the broker: the ``update`` and ``update_status`` messages checked strictly, the
ACL (a desk reads only its own update, writes only its own status), central publishing each desk's
update (retained) and keeping the status it reports, and the bundle on central's HTTPS."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import psycopg
import pytest

from offhook import bundle as B
from offhook.floor import broker
from offhook.floor import rollouts as R
from offhook.floor import schema as S
from tests.fleet import keyring
from tests.floor.rig import CentralTask, Mosquitto
from tests.floor.webrig import client_ssl, web_for

SHA = "ab" * 32
UPDATE = {"v": 1, "rollout": "r1", "sha256": SHA, "version": "1.2.0", "board": "pico", "url": f"/bundles/{SHA}"}
STATUS = {"v": 1, "rollout": "r1", "phase": "receiving", "percent": 40, "reason": "", "tz": "Europe/Paris"}


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def test_update_and_update_status_are_checked_strictly() -> None:
    assert S.decode(S.UPDATE, _raw(UPDATE)) == UPDATE
    assert S.decode(S.UPDATE, _raw({"v": 1, "rollout": "r1", "cancel": True}))["cancel"] is True
    assert S.decode(S.UPDATE_STATUS, _raw(STATUS)) == STATUS
    bad_updates = [
        {**UPDATE, "sha256": "AB" * 32},
        {**UPDATE, "url": "https://elsewhere.example/x"},
        {**UPDATE, "url": f"/bundles/{'cd' * 32}"},
        {**UPDATE, "extra": 1},
        {**UPDATE, "rollout": ""},
        {**UPDATE, "version": 12},
        {"v": 1, "rollout": "r1", "cancel": False},
        {"v": 1, "rollout": "r1", "cancel": True, "sha256": SHA},
        {**UPDATE, "v": 2},
    ]
    for body in bad_updates:
        with pytest.raises(S.SchemaError):
            S.decode(S.UPDATE, _raw(body))
    bad_statuses = [
        {**STATUS, "phase": "bogus"},
        {**STATUS, "percent": 101},
        {**STATUS, "percent": True},
        {**STATUS, "tz": "x" * 65},
        {k: v for k, v in STATUS.items() if k != "reason"},
    ]
    for body in bad_statuses:
        with pytest.raises(S.SchemaError):
            S.decode(S.UPDATE_STATUS, _raw(body))
    with pytest.raises(S.SchemaError, match="oversize"):
        S.decode(S.UPDATE_STATUS, _raw({**STATUS, "pad": "x" * 3000}))
    assert S.parse_topic("offhook/v1/hq/desk-01/update").kind == S.UPDATE
    assert S.parse_topic("offhook/v1/hq/desk-01/update_status").kind == S.UPDATE_STATUS
    # Every phase the daemon's relay reports is one central takes.
    for phase in S.UPDATE_PHASES:
        R.check_status({"rollout": "r1", "phase": phase})


def test_the_acl_lets_a_desk_read_its_own_update_and_write_its_own_status() -> None:
    text = broker.acl_text([broker.Desk("hq", "desk-01")], ["central-1"])
    assert "topic write offhook/v1/+/+/update" in text.split("user desk-01")[0]
    desk = text.split("user desk-01")[1]
    assert "topic read offhook/v1/hq/desk-01/update\n" in desk
    assert "topic write offhook/v1/hq/desk-01/update_status" in desk
    assert "topic write offhook/v1/hq/desk-01/update\n" not in desk


def _floor(db: str, data: bytes) -> None:
    with psycopg.connect(db, autocommit=True) as conn:
        for desk in ("desk-01", "desk-02"):
            conn.execute("INSERT INTO desks (site, desk, team, online) VALUES ('hq', %s, 'blue', true)", (desk,))
            conn.execute(
                "INSERT INTO inventory (site, desk, run, seq, serial, board, firmware, slot, health, transport,"
                " connected, ts) VALUES ('hq', %s, 1, 1, %s, 'pico', '1.1.0', 'a', 'confirmed', 'serial', true, 0)",
                (desk, f"serial-{desk}"),
            )
        spec = R.Spec(name="r1", version="1.2.0", board="pico", sha256=B.sha256_hex(data), canary=1, soak_s=3600)
        R.create(conn, spec, data)


async def _messages(client: aiomqtt.Client, into: list[tuple[str, dict[str, Any]]]) -> None:
    async for message in client.messages:
        payload = message.payload
        assert isinstance(payload, bytes)
        into.append((str(message.topic), json.loads(payload)))


async def _until(check: Any, timeout: float) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.05)


def test_central_sends_the_canary_its_update_over_the_broker_and_keeps_its_status(mqtt: Mosquitto, db: str) -> None:
    data = keyring.signed(version="1.2.0")
    sha = B.sha256_hex(data)

    async def scenario() -> None:
        task = CentralTask(mqtt, db)
        web = web_for(task.central, mqtt, db)
        async with task:
            await asyncio.wait_for(web.ready.wait(), 10)
            _floor(db, data)
            one: list[tuple[str, dict[str, Any]]] = []
            two: list[tuple[str, dict[str, Any]]] = []
            async with (
                mqtt.broker("desk-01").client("desk-01") as d1,
                mqtt.broker("desk-02").client("desk-02") as d2,
            ):
                await d1.subscribe("offhook/v1/hq/+/update", qos=1)
                await d2.subscribe("offhook/v1/hq/+/update", qos=1)  # the ACL shows desk-02 only its own
                readers = [asyncio.create_task(_messages(d1, one)), asyncio.create_task(_messages(d2, two))]
                try:
                    await _until(lambda: one, 10)
                    assert one == [
                        (
                            "offhook/v1/hq/desk-01/update",
                            {"v": 1, "rollout": "r1", "sha256": sha, "version": "1.2.0", "board": "pico"}
                            | {"url": f"/bundles/{sha}"},
                        )
                    ]
                    # desk-02 writes a status under desk-01's name (refused) and its own (kept).
                    forged = S.encode({**STATUS, "phase": "failed", "reason": "forged"})
                    await d2.publish("offhook/v1/hq/desk-01/update_status", forged, qos=1)
                    await d2.publish("offhook/v1/hq/desk-01/update", S.encode({"rollout": "r1", "cancel": True}))
                    status = S.encode({**STATUS, "phase": "confirmed", "percent": 100})
                    await d1.publish("offhook/v1/hq/desk-01/update_status", status, qos=1, retain=True)

                    def phases() -> dict[str, str]:
                        with psycopg.connect(db, autocommit=True) as conn:
                            rows = conn.execute("SELECT desk, phase FROM rollout_units").fetchall()
                        return dict(rows)

                    await _until(lambda: phases().get("hq/desk-01") == "confirmed", 10)
                    await asyncio.sleep(0.5)
                    # Soaking: desk-02, next in line, is only told to fetch the bundle ahead.
                    assert "hq/desk-02" not in phases()
                    assert [(topic, body.get("prefetch")) for topic, body in two] == [
                        ("offhook/v1/hq/desk-02/update", True)
                    ]
                    assert one[1:] == [], "desk-02 could not cancel desk-01's update"
                    assert task.central.rollouts.tz == {"hq/desk-01": "Europe/Paris"}
                finally:
                    for reader in readers:
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                            await reader
            # The bundle over central's HTTPS, whole and by range, named by its sha256; no other name.
            url = f"https://localhost:{web.port}/bundles/{sha}"
            async with aiohttp.ClientSession() as session:
                async with session.get(url, ssl=client_ssl(mqtt)) as answer:
                    assert (answer.status, await answer.read()) == (200, data)
                async with session.get(url, ssl=client_ssl(mqtt), headers={"Range": "bytes=10-19"}) as answer:
                    assert (answer.status, await answer.read()) == (206, data[10:20])
                async with session.get(url.replace(sha, "0" * 64), ssl=client_ssl(mqtt)) as answer:
                    assert answer.status == 404

    asyncio.run(scenario())


def test_floor_central_url_is_https_and_a_bad_update_is_refused_at_the_desk(mqtt: Mosquitto, tmp_path: Path) -> None:
    from offhook import config
    from tests.floor.rig import SinkDesk

    base = {"floor": {**mqtt.floor_config("desk-01"), "keepalive_s": 5}}
    assert config.validate(base)["floor"]["central_url"] == ""
    ok = config.validate({"floor": {**base["floor"], "central_url": "https://central.example.com:8443"}})
    assert ok["floor"]["central_url"] == "https://central.example.com:8443"
    for bad in ("http://central.example.com:8443", "https://central.example.com/x", "ftp://c", "https://u@c"):
        with pytest.raises(config.ConfigError, match="central_url"):
            config.validate({"floor": {**base["floor"], "central_url": bad}})

    desk = SinkDesk(mqtt, "desk-01", tmp_path)
    got: list[dict[str, Any]] = []
    desk.client.on_update = got.append
    desk.client.update(_raw({**UPDATE, "url": "https://elsewhere.example/x"}))
    desk.client.update(b"not json")
    desk.client.update(b"")  # a retained update cleared: nothing
    desk.client.update(_raw({**UPDATE, "prefetch": "yes"}))
    assert got == [] and desk.client.counters["update_refused"] == 3
    desk.client.update(_raw(UPDATE))
    desk.client.update(_raw({**UPDATE, "prefetch": True}))
    assert got == [{k: v for k, v in UPDATE.items() if k != "v"}, {**got[0], "prefetch": True}]
    desk.client.update_status({"rollout": "r1", "phase": "failed", "percent": 0, "reason": "x" * 999, "tz": ""})
    assert desk.client.last_update_status is not None
    assert len(S.decode(S.UPDATE_STATUS, desk.client.last_update_status.payload)["reason"]) == 256
