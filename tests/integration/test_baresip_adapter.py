"""The baresip adapter against real baresip 1.0 instances calling each other on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offhook.softphone.baresip import BaresipAdapter, parse_listcalls
from offhook.softphone.baresip_process import BaresipInstance
from offhook.softphone.base import CallState, EventKind, SoftphoneError, SoftphoneEvent
from offhook.softphone.netstring import NetstringDecoder, encode

TIMEOUT = 5.0


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[dict[str, BaresipInstance]]:
    started = {}
    try:
        for name in ("agent", "customer", "supervisor", "customer2"):
            started[name] = BaresipInstance(name, tmp_path).start()
        yield started
    finally:
        for instance in started.values():
            instance.stop()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


async def connect(instance: BaresipInstance) -> BaresipAdapter:
    adapter = BaresipAdapter(port=instance.ctrl_port)
    await adapter.start()
    await asyncio.wait_for(adapter.connected.wait(), TIMEOUT)
    event = await next_event(adapter, EventKind.CONNECTED)
    assert event.kind is EventKind.CONNECTED
    return adapter


async def next_event(
    adapter: BaresipAdapter, kind: EventKind, where: Callable[[SoftphoneEvent], bool] = lambda e: True
) -> SoftphoneEvent:
    while True:
        event = await asyncio.wait_for(adapter.events.get(), TIMEOUT)
        if event.kind is kind and where(event):
            return event


async def incoming_call(agent: BaresipAdapter, caller: BaresipAdapter, agent_uri: str) -> str:
    await caller.command("dial", agent_uri)
    event = await next_event(agent, EventKind.INCOMING)
    assert agent.calls[event.call_id].state is CallState.INCOMING
    return event.call_id


def test_answer_hold_mute_hangup(phones: dict[str, BaresipInstance]) -> None:
    async def scenario() -> None:
        agent, customer = await connect(phones["agent"]), await connect(phones["customer"])
        call_id = await incoming_call(agent, customer, phones["agent"].uri)
        assert agent.calls[call_id].peer == phones["customer"].uri

        await agent.answer(call_id)
        await next_event(agent, EventKind.ESTABLISHED)
        await next_event(customer, EventKind.ESTABLISHED)
        assert agent.calls[call_id].state is CallState.ESTABLISHED
        assert agent.calls[call_id].muted is False

        assert await agent.hold(call_id) is True
        assert (await next_event(agent, EventKind.HELD)).call_id == call_id
        assert await agent.resume(call_id) is False
        await next_event(agent, EventKind.RESUMED)

        assert await agent.set_mute(call_id, True) is True
        await next_event(agent, EventKind.MUTED)
        assert await agent.set_mute(call_id, True) is True  # already muted: no toggle sent
        assert await agent.set_mute(call_id, False) is False
        await next_event(agent, EventKind.UNMUTED)

        await agent.hangup(call_id)
        closed = await next_event(customer, EventKind.CLOSED)
        assert closed.call_id == call_id
        await next_event(agent, EventKind.CLOSED)
        assert agent.calls == {}
        await agent.stop()
        await customer.stop()

    run(scenario())


def test_reject_ringing_call(phones: dict[str, BaresipInstance]) -> None:
    async def scenario() -> None:
        agent, customer = await connect(phones["agent"]), await connect(phones["customer"])
        call_id = await incoming_call(agent, customer, phones["agent"].uri)
        await agent.reject(call_id)
        closed = await next_event(customer, EventKind.CLOSED)
        assert closed.call_id == call_id
        with pytest.raises(SoftphoneError):
            await agent.answer(call_id)  # gone
        await agent.stop()
        await customer.stop()

    run(scenario())


def test_second_call_answer_holds_the_first(phones: dict[str, BaresipInstance]) -> None:
    async def scenario() -> None:
        agent = await connect(phones["agent"])
        first_caller, second_caller = await connect(phones["customer"]), await connect(phones["customer2"])
        first = await incoming_call(agent, first_caller, phones["agent"].uri)
        await agent.answer(first)
        await next_event(agent, EventKind.ESTABLISHED)

        second = await incoming_call(agent, second_caller, phones["agent"].uri)
        await agent.answer(second)
        await next_event(agent, EventKind.ESTABLISHED, lambda e: e.call_id == second)
        await agent.refresh()
        assert agent.calls[first].held is True
        assert agent.calls[second].held is False
        assert agent.calls[second].state is CallState.ESTABLISHED

        # Calls are addressed by id even when the other one is current in baresip.
        await agent.hangup(second)
        await next_event(second_caller, EventKind.CLOSED)
        assert await agent.resume(first) is False
        await agent.hangup(first)
        await next_event(first_caller, EventKind.CLOSED)
        for adapter in (agent, first_caller, second_caller):
            await adapter.stop()

    run(scenario())


def test_blind_transfer_reaches_supervisor(phones: dict[str, BaresipInstance]) -> None:
    async def scenario() -> None:
        agent, customer = await connect(phones["agent"]), await connect(phones["customer"])
        supervisor = await connect(phones["supervisor"])
        call_id = await incoming_call(agent, customer, phones["agent"].uri)
        await agent.answer(call_id)
        await next_event(customer, EventKind.ESTABLISHED)

        await agent.transfer(call_id, phones["supervisor"].uri)
        incoming = await next_event(supervisor, EventKind.INCOMING)
        assert incoming.peer == phones["customer"].uri
        await supervisor.answer(incoming.call_id)
        await next_event(supervisor, EventKind.ESTABLISHED)
        for adapter in (agent, customer, supervisor):
            await adapter.stop()

    run(scenario())


def test_reconnect_rebuilds_state_with_real_call_ids(phones: dict[str, BaresipInstance]) -> None:
    """A restarted daemon finds the call in progress under its own SIP Call-ID at once."""

    async def scenario() -> None:
        agent, customer = await connect(phones["agent"]), await connect(phones["customer"])
        call_id = await incoming_call(agent, customer, phones["agent"].uri)
        await agent.answer(call_id)
        await next_event(agent, EventKind.ESTABLISHED)
        assert await agent.hold(call_id)
        await agent.stop()

        restarted = BaresipAdapter(port=phones["agent"].ctrl_port)
        await restarted.start()
        connected = await next_event(restarted, EventKind.CONNECTED)
        (call,) = connected.calls
        assert (call.call_id, call.peer, call.direction) == (call_id, phones["customer"].uri, "inbound")
        assert (call.state, call.held) == (CallState.ESTABLISHED, True)
        assert call.muted is None  # baresip cannot be asked: unconfirmed until it says
        assert await restarted.resume(call_id) is False
        await restarted.hangup(call_id)
        await next_event(customer, EventKind.CLOSED)
        await restarted.stop()
        await customer.stop()

    run(scenario())


def test_baresip_restart_is_survived(phones: dict[str, BaresipInstance]) -> None:
    async def scenario() -> None:
        agent = await connect(phones["agent"])
        phones["agent"].kill()
        assert (await next_event(agent, EventKind.DISCONNECTED)).reason
        with pytest.raises(SoftphoneError, match="not connected"):
            await agent.command("listcalls")
        phones["agent"].start()
        connected = await next_event(agent, EventKind.CONNECTED)
        assert connected.calls == []
        customer = await connect(phones["customer"])
        call_id = await incoming_call(agent, customer, phones["agent"].uri)
        await agent.answer(call_id)
        await next_event(customer, EventKind.ESTABLISHED)
        await agent.stop()
        await customer.stop()

    run(scenario())


def test_malformed_ctrl_tcp_input_is_survived() -> None:
    """Garbage framing forces a reconnect; bad JSON and unknown events are logged and skipped."""

    async def scenario() -> None:
        sessions: list[int] = []

        async def fake_baresip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sessions.append(1)
            decoder = NetstringDecoder()
            requests: list[bytes] = []
            while not requests:
                requests = decoder.feed(await reader.read(4096))
            token = json.loads(requests[0])["token"]
            writer.write(encode(json.dumps({"response": True, "ok": True, "data": "", "token": token}).encode()))
            if len(sessions) == 1:
                writer.write(b"zz:not a netstring,")  # framing garbage: stream can't be trusted
            else:
                writer.write(encode(b"{not json"))
                writer.write(encode(b"[1, 2]"))
                writer.write(encode(json.dumps({"event": True, "type": "CALL_FROBNICATED", "id": "x"}).encode()))
                event = {"event": True, "type": "CALL_INCOMING", "id": "c1", "peeruri": "sip:a@b"}
                writer.write(encode(json.dumps(event).encode()))
            await writer.drain()
            await asyncio.sleep(5)

        server = await asyncio.start_server(fake_baresip, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        adapter = BaresipAdapter(port=port)
        await adapter.start()
        await next_event(adapter, EventKind.CONNECTED)
        await next_event(adapter, EventKind.DISCONNECTED)
        await next_event(adapter, EventKind.CONNECTED)
        incoming = await next_event(adapter, EventKind.INCOMING)
        assert incoming.call_id == "c1"
        assert adapter.protocol_errors == 3  # bad framing, bad JSON, not an object
        await adapter.stop()
        server.close()

    run(scenario())


def test_an_event_racing_the_reconnect_snapshot_keeps_the_real_id_and_direction() -> None:
    """After a reconnect a call is first known by its line; an event that names it (here an RTCP
    report, after a hold the SDP answer) can arrive before ``callstat`` does. Either way the call
    ends up under its Call-ID with its real direction, which listcalls alone cannot tell."""
    peer = "sip:customer@127.0.0.1:33110"
    listcalls = f"\n--- Active calls (1) ---\n  [line 1]  0:00:09  ESTABLISHED  (on hold)  {peer}\n\n"
    callstat = "\n===== Call debug (ESTABLISHED) =====\n af=AF_INET id=9559abd1a386afde\n direction: Incoming\n"
    rtcp = {"event": True, "type": "CALL_RTCP", "class": "call", "direction": "incoming",
            "peeruri": peer, "id": "9559abd1a386afde", "param": "audio"}  # fmt: skip

    async def scenario(callstat_names_it: bool) -> None:
        async def fake_baresip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            decoder = NetstringDecoder()
            while data := await reader.read(4096):
                for request in map(json.loads, decoder.feed(data)):
                    reply = {"listcalls": listcalls, "callstat": callstat if callstat_names_it else "no id here"}
                    if request["command"] == "callstat":
                        writer.write(encode(json.dumps(rtcp).encode()))
                    text = reply.get(request["command"], "")
                    writer.write(encode(json.dumps({"response": True, "ok": True, "data": text,
                                                    "token": request["token"]}).encode()))  # fmt: skip
                await writer.drain()

        server = await asyncio.start_server(fake_baresip, "127.0.0.1", 0)
        adapter = BaresipAdapter(port=server.sockets[0].getsockname()[1])
        await adapter.start()
        (call,) = (await next_event(adapter, EventKind.CONNECTED)).calls
        assert (call.call_id, call.peer, call.direction) == ("9559abd1a386afde", peer, "inbound")
        assert (call.state, call.held) == (CallState.ESTABLISHED, True)
        assert list(adapter.calls) == ["9559abd1a386afde"]
        await adapter.stop()
        server.close()

    run(scenario(callstat_names_it=True))  # the event lands between listcalls and callstat's reply
    run(scenario(callstat_names_it=False))  # callstat names nothing: the event alone names the call


def test_parse_listcalls() -> None:
    text = (
        "\n--- Active calls (2) ---\n"
        "  [line 1]  0:00:04  ESTABLISHED  (on hold)  sip:cust1@127.0.0.1:33030\n"
        "> [line 2]  0:00:00   INCOMING             sip:cust2@127.0.0.1:49784\n\n"
    )
    assert parse_listcalls(text) == [
        (1, "sip:cust1@127.0.0.1:33030", CallState.ESTABLISHED, True),
        (2, "sip:cust2@127.0.0.1:49784", CallState.INCOMING, False),
    ]
