"""Bad input on the floor: each refused, counted by central, and central keeps running. No password,
token or customer number reaches a log."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import aiomqtt
import pytest

from offhook.floor import schema as S
from offhook.floor.client import Broker
from tests.floor.rig import SITE, CentralTask, Mosquitto, SinkDesk, count, query, run, until


def counters(db: str) -> dict[str, int]:
    return {name: int(value) for name, value in query(db, "SELECT name, value FROM counters")}


async def publish(broker: Broker, topic: str, payload: bytes, retain: bool = False) -> None:
    async with broker.client(broker.username) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


def test_bad_input_is_refused_and_counted_and_central_keeps_running(
    db: str, mqtt: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        async with CentralTask(mqtt, db, broker_log=mqtt.log):
            desk1 = SinkDesk(mqtt, "desk-01", tmp_path, ack_timeout_s=1.0)
            desk1.start()
            desk1.call()
            await until(lambda: desk1.recorder.floor_acked() == 1, 10)
            desk2 = mqtt.broker("desk-02")

            # Anonymous, and a wrong password: the broker refuses the connection; central counts both.
            for anonymous in (Broker("localhost", mqtt.port, True, "", None, ca_file=desk2.ca_file),):
                with pytest.raises(aiomqtt.MqttError):
                    async with anonymous.client("anonymous-client"):
                        pass
            with pytest.raises(aiomqtt.MqttError):
                async with mqtt.broker("desk-02", password="not-the-password").client("desk-02"):
                    pass
            await until(lambda: counters(db).get("auth_refused", 0) >= 2, 5)

            # desk-02 publishes under desk-01's topics: the ACL drops it, central counts it from the broker.
            fake = {"run": 9**9, "seq": 1, "status": "break", "agent": "break", "call": "idle", "calls": 0}
            fake |= {"since": 1.0, "hold_since": None, "ts": 1.0}
            await publish(desk2, S.topic(SITE, "desk-01", S.STATE), S.encode(fake), retain=True)
            await publish(desk2, S.topic(SITE, "desk-01", S.RECORDS), b"{}")
            await until(lambda: counters(db).get("acl_denied", 0) >= 2, 5)
            assert query(db, "SELECT status FROM live_state WHERE desk = 'desk-01'") != [("break",)]

            # desk-02 claims desk-01's store id for a record: refused (the store belongs to desk-01).
            store = desk1.client.outbox.store
            forged = {"store": store, "after": 0, "records": [_record("desk-01-call-1@pbx", seq=99)]}
            await publish(desk2, S.topic(SITE, "desk-02", S.RECORDS), S.encode(forged))
            await until(lambda: counters(db).get("refused_store", 0) >= 1, 5)
            assert query(db, "SELECT seq, desk FROM calls") == [(1, "desk-01")]

            # Malformed, oversize and unknown-schema messages under desk-02's own topics.
            own = S.topic(SITE, "desk-02", S.STATE)
            await publish(desk2, own, b"{not json")
            await publish(desk2, own, json.dumps({"v": 1, "status": "dancing"}).encode())
            await publish(desk2, own, json.dumps({"v": 2, **fake}).encode())
            await publish(desk2, S.topic(SITE, "desk-02", S.RECORDS), b"[" + b" " * (600 * 1024) + b"]")
            await until(lambda: (counters(db).get("malformed", 0), counters(db).get("unknown_schema", 0)) == (2, 1), 5)
            await until(lambda: counters(db).get("oversize", 0) == 1, 5)

            # A desk reads only what is meant for it: not desk-01's acknowledgements, nor anything else.
            got: list[str] = []
            async with desk2.client("desk-02") as client:
                await client.subscribe(f"{S.PREFIX}/#", qos=1)
                await client.subscribe(S.topic(SITE, "desk-01", S.ACK), qos=1)
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(1.0):
                        async for message in client.messages:
                            got.append(str(message.topic))
            assert got == []

            # Central kept running: the next good record lands, once.
            desk1.call()
            await until(lambda: count(db) == 2, 5)
            await desk1.stop()

    run(scenario(), 60)
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert all("\n" not in line for line in refusals) and len(refusals) >= 8
    secrets = [mqtt.password(name) for name in ("desk-01", "desk-02", "central-1")] + ["not-the-password"]
    assert not any(secret in caplog.text for secret in secrets)
    assert "+4930" not in caplog.text and "+4930" not in mqtt.log.read_text()


def _record(call_id: str, seq: int) -> dict[str, object]:
    return {
        "seq": seq,
        "call_id": call_id,
        "agent": "mallory",
        "tz": "UTC",
        "direction": "inbound",
        "number": None,
        "outcome": "missed",
        "ring_wall": 1.0,
        "answer_wall": None,
        "end_wall": 2.0,
        "wrap_wall": None,
        "local_start": "1970-01-01T00:00:01+00:00",
        "local_day": "1970-01-01",
        "ring_s": 1.0,
        "talk_s": None,
        "hold_s": None,
        "wrap_s": None,
        "holds": 0,
        "long_holds": 0,
        "ended_by": None,
    }
