"""The local WebSocket API: admission, pairing on the unit, call-control ownership, web softphone."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from offhook import config
from offhook import linkproto as L
from offhook.api.server import ApiServer
from offhook.api.tokens import TokenStore
from offhook.daemon.service import Daemon
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from offhook.softphone.base import EventKind, Softphone, SoftphoneEvent
from offhook.softphone.web import WebSoftphone

CRM = "https://crm.example.com"


class Api:
    def __init__(self, tmp_path: Path, softphone: Softphone | None = None, **cfg: Any) -> None:
        self.config = config.validate({"api": {"allowed_origins": [CRM]}, **cfg})
        self.softphone = softphone or WebSoftphone()
        self.daemon = Daemon(self.config, self.softphone, tmp_path / "state.json")
        self.tokens = TokenStore(tmp_path / "run", tmp_path / "cfg")
        self.server = ApiServer(self.daemon, self.tokens, 0, self.config["api"]["allowed_origins"])
        if isinstance(self.softphone, WebSoftphone):
            self.server.web_softphone = self.softphone

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/api"

    @contextlib.asynccontextmanager
    async def client(self, token: str | None = None, origin: str | None = None) -> AsyncIterator[ClientConnection]:
        async with connect(self.url, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "auth", "token": token or self.tokens.user_token()}))
            welcome = json.loads(await ws.recv())
            assert welcome["ok"] and welcome["type"] == "welcome", welcome
            yield ws


async def ask(ws: ClientConnection, **message: Any) -> dict[str, Any]:
    """Send a request; skip pushed events until its reply arrives."""
    await ws.send(json.dumps(message))
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if reply.get("type") not in ("event", "request"):
            return reply


async def pushed(ws: ClientConnection, where: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if where(message):
            return message


def run(tmp_path: Path, scenario: Callable[[Api], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        api = Api(tmp_path, **kwargs)
        await api.server.start()
        try:
            await scenario(api)
        finally:
            await api.server.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_refuses_missing_wrong_token_and_foreign_origin(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        for first in ({"type": "state"}, {"type": "auth", "token": "wrong" * 10}, {"type": "auth"}):
            async with connect(api.url) as ws:
                await ws.send(json.dumps(first))
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        with pytest.raises(InvalidStatus) as refused:
            async with connect(api.url, origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        # A listed origin still needs its own token: the user token is not for browsers.
        async with connect(api.url, origin=CRM) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "auth", "token": api.tokens.user_token()}))
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert all(sock.getsockname()[0] == "127.0.0.1" for sock in api.server._server.sockets)  # type: ignore[union-attr]
        mode = stat.S_IMODE(api.tokens.user_token_path.stat().st_mode)
        assert mode == 0o600

    run(tmp_path, scenario)


def test_pairing_is_approved_on_the_desk_unit_then_revocable(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        async with connect(api.url, origin=CRM) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "pair", "name": "Acme CRM"}))
            for _ in range(100):
                if api.daemon.desk.pairing:
                    break
                await asyncio.sleep(0.01)
            assert api.daemon.desk.unit_state().flags & L.STATE_PAIRING  # the unit shows the request
            await api.daemon.press(L.BUTTON_HOOK, L.GESTURE_SHORT)  # the agent approves
            paired = json.loads(await ws.recv())
        assert paired["type"] == "paired" and paired["origin"] == CRM
        assert CRM in api.tokens.paired() and paired["token"] not in api.tokens.origins_path.read_text()
        async with api.client(paired["token"], origin=CRM) as crm:
            assert (await ask(crm, type="state"))["ok"]
        assert api.tokens.revoke(CRM)
        async with connect(api.url, origin=CRM) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "auth", "token": paired["token"]}))
            with pytest.raises(ConnectionClosed):
                await ws.recv()

    run(tmp_path, scenario)


def test_pairing_refused_with_a_long_press(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        async with connect(api.url, origin=CRM) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "pair", "name": "Acme CRM"}))
            while not api.daemon.desk.pairing:
                await asyncio.sleep(0.01)
            await api.daemon.press(L.BUTTON_HOOK, L.GESTURE_LONG)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and "refused" in closed.value.rcvd.reason
        assert api.tokens.paired() == {}
        assert not api.daemon.desk.pairing

    run(tmp_path, scenario)


def test_one_owner_of_call_control(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        async with api.client() as first, api.client() as second:
            refused = await ask(first, type="command", action="hold")
            assert not refused["ok"] and "held by the softphone" in refused["error"]
            assert (await ask(first, type="control", take=True))["control"].startswith("client-")
            taken = await ask(second, type="control", take=True)
            assert not taken["ok"] and "call control is held by local client" in taken["error"]
            assert not (await ask(second, type="command", action="hold"))["ok"]
            refused = await ask(first, type="command", action="hold")  # owner: allowed, desk refuses (no call)
            assert refused["ok"]
        async with api.client() as third:  # the owner left: control went back to the softphone
            assert (await ask(third, type="state"))["control"] == "softphone"

    run(tmp_path, scenario)


def test_bad_requests_get_errors_and_the_connection_stays(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        async with api.client() as ws:
            await ws.send("{not json")
            assert "not JSON" in json.loads(await ws.recv())["error"]
            assert "unknown request type" in (await ask(ws, type="frobnicate"))["error"]
            assert "unknown action" in (await ask(ws, type="command", action="explode"))["error"]
            await ws.send("[1]")
            assert "JSON object" in json.loads(await ws.recv())["error"]
            assert (await ask(ws, type="agent_state", state="break"))["agent"] == "break"
            assert (await ask(ws, type="state"))["state"]["agent"] == "break"

    run(tmp_path, scenario)


def test_web_softphone_role_end_to_end(tmp_path: Path) -> None:
    """A browser softphone reports calls and carries out requests from the desk unit's buttons."""

    async def scenario(api: Api) -> None:
        daemon_task = asyncio.create_task(api.daemon._softphone_loop())
        async with api.client() as phone, api.client() as panel:
            assert (await ask(phone, type="register_softphone"))["ok"]
            assert (await ask(panel, type="subscribe"))["ok"]
            await ask(phone, type="softphone_event", event="incoming", call="c1", peer="sip:customer@x")
            await pushed(panel, lambda m: m.get("event") == "state" and m["call"] == "ringing")
            await api.daemon.press(L.BUTTON_HOOK, L.GESTURE_SHORT)  # answer on the unit
            request = await pushed(phone, lambda m: m.get("type") == "request")
            assert (request["op"], request["call"]) == ("answer", "c1")
            await ask(phone, type="reply", request=request["request"], ok=True)
            await ask(phone, type="softphone_event", event="established", call="c1")
            await pushed(panel, lambda m: m.get("event") == "state" and m["agent"] == "on_call")
            await api.daemon.press(L.BUTTON_MUTE, L.GESTURE_SHORT)
            request = await pushed(phone, lambda m: m.get("type") == "request")
            assert (request["op"], request["muted"]) == ("mute", True)
            await ask(phone, type="reply", request=request["request"], ok=True, result=True)
            state = await pushed(panel, lambda m: m.get("event") == "state" and m["muted"])
            assert state["mute_confirmed"] is True
            bad = await ask(phone, type="softphone_event", event="exploded", call="c1")
            assert not bad["ok"] and "unknown softphone event" in bad["error"]
        daemon_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await daemon_task

    run(tmp_path, scenario, softphone=WebSoftphone())


def test_api_client_drives_a_real_baresip_call(tmp_path: Path) -> None:
    agent = BaresipInstance("agent", tmp_path).start()
    customer = BaresipInstance("customer", tmp_path).start()
    try:

        async def scenario(api: Api) -> None:
            running = asyncio.create_task(api.daemon.run())
            caller = BaresipAdapter(port=customer.ctrl_port)
            await caller.start()
            await asyncio.wait_for(caller.connected.wait(), 5)
            async with api.client() as crm:
                await ask(crm, type="subscribe")
                await ask(crm, type="control", take=True)
                await caller.command("dial", agent.uri)
                await pushed(crm, lambda m: m.get("event") == "incoming")
                assert (await ask(crm, type="command", action="answer"))["ok"]
                await pushed(crm, lambda m: m.get("event") == "established")
                assert (await ask(crm, type="command", action="hangup"))["ok"]
                closed = await pushed(crm, lambda m: m.get("event") == "closed")
                assert closed["call"]
            event = await asyncio.wait_for(caller.events.get(), 5)
            while event.kind is not EventKind.CLOSED:
                event = await asyncio.wait_for(caller.events.get(), 5)
            await caller.stop()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

        run(tmp_path, scenario, softphone=BaresipAdapter(port=agent.ctrl_port))
    finally:
        agent.stop()
        customer.stop()


def test_figures_for_the_panel_follow_completed_calls(tmp_path: Path) -> None:
    """Calls the desk records land in the metrics store; the panel's figures follow them."""
    from offhook.daemon.desk import Record
    from offhook.metrics.report import today
    from offhook.metrics.sink import MetricsSink
    from offhook.metrics.store import CallRecorder

    recorder = CallRecorder(tmp_path / "metrics.sqlite3")
    sink = MetricsSink(recorder, agent="alice", tz="Europe/Berlin")

    async def scenario(api: Api) -> None:
        api.daemon.recorder = sink
        api.server.figures = lambda: today(recorder.conn, agent="alice", tz="Europe/Berlin")
        async with api.client() as panel:
            assert (await ask(panel, type="figures"))["figures"]["calls"] == 0
            await ask(panel, type="subscribe")
            for moment, at in (("ringing", 0.0), ("answered", 4.0), ("hung_up", 64.0), ("wrap_up_ended", 94.0)):
                await api.daemon.apply([Record(moment, "call-1", at, {"peer": "sip:+4930123@pbx"})])
            pushed_figures = await pushed(panel, lambda m: m.get("event") == "figures")
        figures = pushed_figures["figures"]
        assert (figures["calls"], figures["handled"]) == (1, 1)
        assert figures["aht_s"] == 90.0  # talk 60 s + wrap-up 30 s

    run(tmp_path, scenario)


def test_figures_are_not_computed_for_nobody(tmp_path: Path) -> None:
    """Today's report reads every call of the day: after each call only when a panel listens
    (computing it anyway made a daemon without a panel grow with the day's calls)."""
    from offhook.daemon.desk import Record

    computed: list[int] = []

    def figures() -> dict[str, int]:
        computed.append(1)
        return {"calls": len(computed)}

    async def scenario(api: Api) -> None:
        api.daemon.recorder = lambda record: None
        api.server.figures = figures
        async with api.client() as panel:
            await api.daemon.apply([Record("wrap_up_ended", "call-1", 1.0, {})])
            await ask(panel, type="state")  # a round trip: the daemon's event has been handled
            assert computed == []
            await ask(panel, type="subscribe")
            await api.daemon.apply([Record("wrap_up_ended", "call-2", 2.0, {})])
            assert (await pushed(panel, lambda m: m.get("event") == "figures"))["figures"] == {"calls": 1}

    run(tmp_path, scenario)


def test_paired_origin_removed_from_the_allowed_list_is_refused(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        token = api.tokens.pair(CRM, "Acme CRM")
        async with api.client(token, origin=CRM) as crm:
            assert (await ask(crm, type="state"))["ok"]
        api.server.allowed_origins = set()  # IT removed it from api.allowed_origins
        with pytest.raises(InvalidStatus) as refused:
            async with connect(api.url, origin=CRM):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403

    run(tmp_path, scenario)


def test_toggle_recording_pause_is_a_client_action(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        desk = api.daemon.desk
        for t, kind in enumerate((EventKind.INCOMING, EventKind.ESTABLISHED), 1):
            await api.daemon.apply(desk.softphone_event(SoftphoneEvent(kind, "c1", "sip:1@pbx", "inbound"), t))
        await api.daemon.apply(desk.recording_changed("c1", "on", 3.0))
        asked: list[dict[str, Any]] = []
        api.daemon.listeners.append(lambda m: asked.append(m) if m.get("event") == "recording_pause" else None)
        async with api.client() as ws:
            # Without call control (the softphone holds it): the recording's pause changes no call.
            assert (await ask(ws, type="command", action="toggle_recording_pause"))["ok"]
            assert [(m["call"], m["paused"]) for m in asked] == [("c1", True)]
            assert not (await ask(ws, type="command", action="hold"))["ok"]  # call commands still need it
            assert (await ask(ws, type="state"))["state"]["recording"] == "on"  # until the recorder confirms

    run(tmp_path, scenario)
