"""Central's publisher (acks, policies, rollout updates): what waits goes out together, in order, each
PUBACK awaited beside the others' (a wave of a rollout is hundreds of updates); what a lost
connection left unconfirmed goes first in the next session. A stand-in for aiomqtt's client."""

from __future__ import annotations

import asyncio
import contextlib

import aiomqtt
import pytest

from offhook.floor.central import Central
from offhook.floor.client import Broker, Publish


class Client:
    """aiomqtt.Client.publish's shape: the message leaves at once, the call returns on its PUBACK."""

    def __init__(self, fail_from: int | None = None) -> None:
        self.sent: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_from = fail_from
        self.pubacks = asyncio.Event()

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self.sent.append(topic)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.pubacks.wait()
            if self.fail_from is not None and len(self.sent) > self.fail_from and topic != self.sent[0]:
                raise aiomqtt.MqttError("Disconnected")
        finally:
            self.in_flight -= 1


def _central() -> Central:
    return Central(Broker("localhost", 1, True, "central-1", "x"), "host=127.0.0.1 dbname=unused")


def test_what_waits_goes_out_together_in_order() -> None:
    async def scenario() -> Client:
        central, client = _central(), Client()
        for n in range(50):
            central._acks.put_nowait(Publish(f"t/{n}", b"{}", retain=True))
        task = asyncio.create_task(central._send_acks(client))  # type: ignore[arg-type]
        while len(client.sent) < 50:
            await asyncio.sleep(0.01)
        client.pubacks.set()
        while client.in_flight:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return client

    client = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert client.sent == [f"t/{n}" for n in range(50)]
    assert client.most_in_flight == 50, "not one round trip after another"


def test_what_a_lost_connection_left_unconfirmed_goes_first_next_time() -> None:
    async def scenario() -> tuple[Client, Client]:
        central, lost, next_session = _central(), Client(fail_from=0), Client()
        for n in range(3):
            central._acks.put_nowait(Publish(f"t/{n}", b"{}"))
        lost.pubacks.set()
        with pytest.raises(aiomqtt.MqttError):
            await central._send_acks(lost)  # type: ignore[arg-type]
        central._acks.put_nowait(Publish("t/3", b"{}"))
        next_session.pubacks.set()
        task = asyncio.create_task(central._send_acks(next_session))  # type: ignore[arg-type]
        while len(next_session.sent) < 3:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return lost, next_session

    lost, next_session = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert lost.sent == ["t/0", "t/1", "t/2"]
    assert next_session.sent == ["t/1", "t/2", "t/3"], "t/0 was confirmed; the others go again, first"
