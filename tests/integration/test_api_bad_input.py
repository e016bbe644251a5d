"""Bad API input gets a one-line refusal, never a traceback, and changes nothing (issue 18, item 6)."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from offhook import linkproto as L
from offhook.softphone.base import EventKind, SoftphoneEvent
from offhook.softphone.web import WebSoftphone
from tests.integration.test_api import CRM, Api, ask, run


@pytest.fixture(autouse=True)
def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> Any:
    """Every test here: each log line (the daemon's stderr) is one line, without a traceback."""
    caplog.set_level(logging.INFO)
    yield
    bad = [r for r in caplog.records if r.exc_info or "\n" in r.getMessage() or "handler failed" in r.getMessage()]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]


async def raw_reply(ws: ClientConnection, text: str) -> dict[str, Any]:
    await ws.send(text)
    while True:
        reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if reply.get("type") not in ("event", "request"):
            return reply


def one_line_refusal(reply: dict[str, Any], *words: str) -> str:
    assert reply["ok"] is False, reply
    error = reply["error"]
    assert isinstance(error, str) and error and "\n" not in error, reply
    for word in words:
        assert word in error, reply
    return error


async def on_a_call(api: Api) -> None:
    """The desk with an answered inbound call (as the softphone reports it)."""
    now = api.daemon.clock()
    for kind in (EventKind.CONNECTED, EventKind.INCOMING, EventKind.ESTABLISHED):
        event = SoftphoneEvent(kind, "c1", "sip:customer@x", "inbound") if kind is not EventKind.CONNECTED else None
        await api.daemon.apply(api.daemon.desk.softphone_event(event or SoftphoneEvent(kind, calls=[]), now))
    assert api.daemon.desk.agent == L.AGENT_ON_CALL


# ------------------------------------------------------------ agent_state


def test_agent_state_refused_on_a_call_answers_ok_false(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        await on_a_call(api)
        async with api.client() as ws:
            for state in ("break", "offline", "available"):
                reply = await ask(ws, id=7, type="agent_state", state=state)
                assert reply["id"] == 7
                one_line_refusal(reply, "on a call")
                assert (await ask(ws, type="state"))["state"]["agent"] == "on_call"

    run(tmp_path, scenario)


@pytest.mark.parametrize("state", ["bogus", "on_call", "wrap_up", "", None, 3, True, ["break"], {"s": "break"}])
def test_agent_state_invalid_answers_ok_false(tmp_path: Path, state: Any) -> None:
    async def scenario(api: Api) -> None:
        async with api.client() as ws:
            assert (await ask(ws, type="agent_state", state="break"))["agent"] == "break"
            one_line_refusal(await ask(ws, type="agent_state", state=state), "available, break, offline")
            assert (await ask(ws, type="state"))["state"]["agent"] == "break"
            one_line_refusal(await ask(ws, type="agent_state"), "available, break, offline")  # no state at all

    run(tmp_path, scenario)


def test_agent_state_allowed_still_answers_ok(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        async with api.client() as ws:
            for state in ("break", "break", "offline", "available"):
                reply = await ask(ws, type="agent_state", state=state)
                assert reply["ok"] and reply["agent"] == state

    run(tmp_path, scenario)


# ------------------------------------------------------------ control


@pytest.mark.parametrize("take", ["false", "true", 0, 1, None, [], {}, "yes"])
def test_control_take_must_be_a_json_boolean(tmp_path: Path, take: Any) -> None:
    async def scenario(api: Api) -> None:
        async with api.client() as first, api.client() as second:
            one_line_refusal(await ask(first, type="control", take=take), "take", "true or false")
            assert (await ask(first, type="state"))["control"] == "softphone"  # nothing taken
            assert (await ask(first, type="control", take=True))["ok"]
            one_line_refusal(await ask(first, type="control", take=take), "take")
            assert (await ask(second, type="state"))["control"].startswith("client-")  # nothing given back
            one_line_refusal(await ask(first, type="control"), "take")  # missing
            assert (await ask(first, type="control", take=False))["control"] == "softphone"

    run(tmp_path, scenario)


# ------------------------------------------------------------ token file


def test_token_file_exists_0600_as_soon_as_the_server_starts(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        path = api.tokens.user_token_path
        assert path.is_file(), "no token file before the first authentication attempt"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        token = path.read_text().strip()
        async with api.client(token) as ws:  # the file's token is the one the server checks
            assert (await ask(ws, type="state"))["ok"]
        assert path.read_text().strip() == token

    run(tmp_path, scenario)


def test_token_file_is_written_0600_before_start_returns(tmp_path: Path) -> None:
    api = Api(tmp_path)
    assert not api.tokens.user_token_path.exists()

    async def main() -> None:
        await api.server.start()
        try:
            assert stat.S_IMODE(api.tokens.user_token_path.stat().st_mode) == 0o600
        finally:
            await api.server.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


# ------------------------------------------------------------ hostile JSON

HOSTILE = [
    "[" * 16000,  # RecursionError in the decoder (under the 16 KiB message limit)
    '{"a":' * 2000 + "1" + "}" * 2000,
    "{" + '"id":' + "[" * 500 + "]" * 500 + ', "type": "state"}',  # parses, but echoing the id could recurse
    "1e400",  # a float that overflows to infinity
    '{"type": "auth", "token": 1e400}',
    '{"type": "auth", "token": "x", "id": 1e400}',
    '{"type": "auth", "token": NaN}',
    '{"type": "auth", "token": "x", "id": -Infinity}',
    "1" * 5000,  # longer than Python's int digit limit
    "\udcff",
    "",
    '{"type": "auth", "token": "\\udcff"}',  # a lone surrogate: str.encode() raises
]


@pytest.mark.parametrize("first", HOSTILE, ids=range(len(HOSTILE)))
def test_unauthenticated_hostile_json_is_a_one_line_refusal(tmp_path: Path, first: str) -> None:
    async def scenario(api: Api) -> None:
        async with connect(api.url) as ws:
            await ws.send(first.encode("utf-8", "surrogatepass") if "\udcff" in first else first)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            frame = closed.value.rcvd
            assert frame is not None and frame.code in (4401, 4403), closed.value
            assert "\n" not in frame.reason
        async with api.client() as ws:  # the server carries on
            assert (await ask(ws, type="state"))["ok"]

    run(tmp_path, scenario)


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_authenticated_hostile_json_is_a_one_line_refusal(tmp_path: Path, text: str) -> None:
    async def scenario(api: Api) -> None:
        async with api.client() as ws:
            data: str | bytes = text.encode("utf-8", "surrogatepass") if "\udcff" in text else text
            await ws.send(data)
            one_line_refusal(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            assert (await ask(ws, type="state"))["ok"]  # the connection stays

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "reply", "request": 1e400, "ok": true}',  # int(inf): OverflowError in the web softphone
        '{"type": "reply", "request": NaN, "ok": true}',
        '{"type": "reply", "request": Infinity, "ok": true}',
        '{"type": "softphone_event", "event": "incoming", "call": "c9", "peer": 1e400}',
    ],
)
def test_non_finite_numbers_never_reach_the_softphone(tmp_path: Path, text: str) -> None:
    async def scenario(api: Api) -> None:
        async with api.client() as phone:
            assert (await ask(phone, type="register_softphone"))["ok"]
            one_line_refusal(await raw_reply(phone, text), "not JSON")
            assert (await ask(phone, type="state"))["ok"]
        assert "c9" not in api.softphone.calls  # type: ignore[attr-defined]

    run(tmp_path, scenario, softphone=WebSoftphone())


def test_long_values_are_cut_in_one_line_errors(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        async with api.client() as ws:
            error = one_line_refusal(await ask(ws, type="x\n" * 4000), "unknown request type")
            assert len(error) < 300
            error = one_line_refusal(await ask(ws, type="command", action="y" * 10000), "unknown action")
            assert len(error) < 300

    run(tmp_path, scenario)


# ------------------------------------------------------------ credentials


def test_lone_surrogate_token_is_a_bad_token_for_every_kind_of_client(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        api.tokens.pair(CRM, "Acme CRM")
        for origin in (None, CRM, f"http://127.0.0.1:{api.server.port}"):  # local, paired, panel
            async with connect(api.url, origin=origin) as ws:  # type: ignore[arg-type]
                await ws.send('{"type": "auth", "token": "\\udcff"}')
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403, (origin, closed.value)

    run(tmp_path, scenario)


def test_token_file_that_cannot_be_written_fails_start_in_one_line(tmp_path: Path) -> None:
    api = Api(tmp_path)
    api.tokens.user_token_path.parent.parent.mkdir(parents=True, exist_ok=True)
    api.tokens.user_token_path.parent.write_text("")  # the runtime dir is a file

    async def main() -> None:
        with pytest.raises(OSError, match=r"^cannot write the API token file .*api-token: ") as error:
            await api.server.start()
        assert "\n" not in str(error.value)
        assert api.server._server is None  # nothing listens

    asyncio.run(asyncio.wait_for(main(), 30))


def test_token_file_replaced_by_a_directory_is_a_bad_token(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(api: Api) -> None:
        token = api.tokens.user_token()
        api.tokens.user_token_path.unlink()
        api.tokens.user_token_path.mkdir()
        async with connect(api.url) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        assert "cannot read or write the API token file" in caplog.text

    run(tmp_path, scenario)


def test_pairing_that_cannot_be_stored_keeps_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(api: Api) -> None:
        other = api.tokens.pair("https://other.example.com", "Other")
        before = api.tokens.origins_path.read_text()
        real_read_text = Path.read_text

        def unreadable(path: Path, *args: Any, **kwargs: Any) -> str:
            if path == api.tokens.origins_path:
                raise PermissionError(13, "Permission denied", str(path))
            return real_read_text(path, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", unreadable)
        async with connect(api.url, origin=CRM) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "pair", "name": "Acme\nCRM"}))
            while not api.daemon.desk.pairing:
                await asyncio.sleep(0.01)
            await api.daemon.press(L.BUTTON_HOOK, L.GESTURE_SHORT)  # approved, but the store is unreadable
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
            assert closed.value.rcvd.reason == "could not store the pairing"
        monkeypatch.undo()
        assert api.tokens.origins_path.read_text() == before  # the other origin's pairing survived
        assert api.tokens.check_origin("https://other.example.com", other)

    run(tmp_path, scenario)
