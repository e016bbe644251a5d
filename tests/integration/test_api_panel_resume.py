"""The agent panel's resume token: it lets the panel back in after a drop or a daemon restart.

The welcome to a panel page carries a resume token (an HMAC-SHA256 keyed with the per-user
token over a purpose string, the panel origin and the issue time; docs/api.md). The daemon
stores nothing for it, so a restarted daemon still accepts it; it counts from the panel origin
it was issued to only, with the panel's rights only. A forged, tampered, expired or misplaced
one is refused like a wrong token: close 4403, one log line, no traceback, and no token ever
reaches the log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from offhook.api.server import ApiServer
from offhook.api.tokens import RESUME_PURPOSE, RESUME_TTL_S, TokenStore
from offhook.softphone.baresip_process import free_port
from tests.integration.test_api import CRM, Api, ask, run

RESUME = re.compile(r"resume1\.[0-9]+\.[A-Za-z0-9_-]{43}")


def panel_origin(api: Api, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{api.server.port}"


async def welcome(api: Api, token: str, origin: str | None) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(api.url, origin=origin)  # type: ignore[arg-type]
    await ws.send(json.dumps({"type": "auth", "token": token}))
    return ws, json.loads(await asyncio.wait_for(ws.recv(), 5))


async def refused(api: Api, token: str, origin: str | None) -> None:
    """Closed with 4403 "bad token", as a wrong token is."""
    async with connect(api.url, origin=origin) as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "auth", "token": token}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None, closed.value
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4403, "bad token")


async def panel_resume_token(api: Api, host: str = "127.0.0.1") -> str:
    """What a panel page holds after its first connection (with the one-time token from `offhook panel`)."""
    ws, hello = await welcome(api, api.tokens.one_time(), panel_origin(api, host))
    await ws.close()
    assert hello["ok"] and hello["type"] == "welcome", hello
    token = hello["resume_token"]
    assert RESUME.fullmatch(token), token
    return str(token)


@pytest.fixture(autouse=True)
def _log_has_no_secret(caplog: pytest.LogCaptureFixture) -> Any:
    """Every test here: the daemon's log lines are single lines without a traceback and without a token."""
    caplog.set_level(logging.DEBUG, logger="offhook")
    yield
    lines = [record.getMessage() for record in caplog.records]
    assert not [r for r in caplog.records if r.exc_info or "\n" in r.getMessage()], lines
    assert not [line for line in lines if "resume1." in line or RESUME.search(line)], lines


def failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "authentication failed" in r.getMessage()]


# ------------------------------------------------------------ accepted


def test_the_panel_comes_back_by_its_resume_token_after_a_daemon_restart(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        origin = panel_origin(api)
        resume = await panel_resume_token(api)
        # The same daemon: the one-time token is spent, the resume token works (again and again).
        for _ in range(2):
            ws, hello = await welcome(api, resume, origin)
            assert hello["ok"] and RESUME.fullmatch(hello["resume_token"]), hello
            assert (await ask(ws, type="subscribe"))["ok"]
            await ws.close()

        # The daemon restarts: a new server and token store, nothing of the panel in memory,
        # the same user token file, the same port.
        port = api.server.port
        await api.server.stop()
        tokens = TokenStore(tmp_path / "run", tmp_path / "cfg")
        api.tokens = tokens
        api.server = ApiServer(api.daemon, tokens, port, [CRM])
        await api.server.start()
        ws, hello = await welcome(api, resume, origin)
        assert hello["ok"] and hello["type"] == "welcome", hello
        fresh = hello["resume_token"]  # the page takes this one for its next connection
        assert (await ask(ws, type="state"))["ok"]
        await ws.close()
        ws, hello = await welcome(api, fresh, origin)
        assert hello["ok"], hello
        await ws.close()

    run(tmp_path, scenario)


def test_a_resume_token_is_reissued_with_each_welcome(tmp_path: Path) -> None:
    """An old one still counts for its 12 hours; the welcome carries one issued now."""

    async def scenario(api: Api) -> None:
        origin = panel_origin(api)
        old = api.tokens.resume_token(origin, now=time.time() - RESUME_TTL_S + 60)
        ws, hello = await welcome(api, old, origin)
        await ws.close()
        issued = int(hello["resume_token"].split(".")[1])
        assert abs(issued - time.time()) < 5, hello

    run(tmp_path, scenario)


def test_only_panel_pages_get_a_resume_token(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        ws, hello = await welcome(api, api.tokens.user_token(), None)  # a local program
        await ws.close()
        assert hello["ok"] and "resume_token" not in hello, hello
        ws, hello = await welcome(api, api.tokens.pair(CRM, "Acme CRM"), CRM)  # a paired page
        await ws.close()
        assert hello["ok"] and "resume_token" not in hello, hello
        # Either panel origin gets one for itself.
        for host in ("127.0.0.1", "localhost"):
            await panel_resume_token(api, host)

    run(tmp_path, scenario)


def test_a_resumed_panel_has_the_panels_rights_only(tmp_path: Path) -> None:
    async def scenario(api: Api) -> None:
        resume = await panel_resume_token(api)
        ws, hello = await welcome(api, resume, panel_origin(api))
        assert hello["ok"], hello
        minted = await ask(ws, type="one_time_token")
        assert not minted["ok"] and "only local programs" in minted["error"], minted
        lent = await ask(ws, type="lend_unit")
        assert not lent["ok"] and "only local programs" in lent["error"], lent
        assert (await ask(ws, type="control", take=True))["ok"]  # what the one-time token's connection may do
        await ws.close()

    run(tmp_path, scenario)


# ------------------------------------------------------------ refused


def forge(key: str, origin: str, issued: int, purpose: str = RESUME_PURPOSE) -> str:
    mac = hmac.new(key.encode(), json.dumps([purpose, origin, issued]).encode(), hashlib.sha256).digest()
    return f"resume1.{issued}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def flip(text: str, index: int) -> str:
    """``text`` with one character changed (at ``index``, counted from the end when negative)."""
    index %= len(text)
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def _other_key(api: Api, token: str, origin: str) -> str:
    return forge("another user's token " + "x" * 32, origin, int(time.time()))


def _another_purpose(api: Api, token: str, origin: str) -> str:
    return forge(api.tokens.user_token(), origin, int(time.time()), purpose="offhook something else v1")


def _no_mac(api: Api, token: str, origin: str) -> str:
    return token.rsplit(".", 1)[0] + "." + "A" * 43


def _mac_tampered(api: Api, token: str, origin: str) -> str:
    return flip(token, len(token) - 5)


def _time_moved(api: Api, token: str, origin: str) -> str:
    _, issued, mac = token.split(".")
    return f"resume1.{int(issued) + 3600}.{mac}"  # later issued, to live longer


def _time_padded(api: Api, token: str, origin: str) -> str:
    _, issued, mac = token.split(".")
    return f"resume1.0{issued}.{mac}"  # the same number, another spelling


def _truncated(api: Api, token: str, origin: str) -> str:
    return token[:-1]


def _lengthened(api: Api, token: str, origin: str) -> str:
    return token + "A"


def _expired(api: Api, token: str, origin: str) -> str:
    return api.tokens.resume_token(origin, now=time.time() - RESUME_TTL_S - 60)


def _from_the_future(api: Api, token: str, origin: str) -> str:
    return api.tokens.resume_token(origin, now=time.time() + 3600)  # would outlive its 12 hours


def _user_token_rotated(api: Api, token: str, origin: str) -> str:
    api.tokens.user_token_path.unlink()  # the user (or IT) rotates the token: every resume token dies
    api.tokens.user_token()  # a new one (the daemon would write it on its next read anyway)
    return token


def _for_another_port(api: Api, token: str, origin: str) -> str:
    return api.tokens.resume_token(f"http://127.0.0.1:{api.server.port + 1}")


def _for_a_paired_origin(api: Api, token: str, origin: str) -> str:
    return api.tokens.resume_token(CRM)


@pytest.mark.parametrize(
    "make",
    [
        _other_key,
        _another_purpose,
        _no_mac,
        _mac_tampered,
        _time_moved,
        _time_padded,
        _truncated,
        _lengthened,
        _expired,
        _from_the_future,
        _user_token_rotated,
        _for_another_port,
        _for_a_paired_origin,
    ],
)
def test_forged_tampered_expired_resume_tokens_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, make: Callable[[Api, str, str], str]
) -> None:
    origins: list[str] = []

    async def scenario(api: Api) -> None:
        origins.append(panel_origin(api))
        token = await panel_resume_token(api)
        bad = make(api, token, origins[0])
        assert bad != token or make is _user_token_rotated
        await refused(api, bad, origins[0])

    run(tmp_path, scenario)
    line = f"API authentication failed from {origins[0]}"
    if make is _expired:  # genuine but old: the log says what to do
        line += " (the panel's resume token expired: run `offhook panel` again)"
    assert failures(caplog) == [line]


def test_a_resume_token_counts_from_its_own_panel_origin_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(api: Api) -> None:
        token = await panel_resume_token(api, "127.0.0.1")
        await refused(api, token, panel_origin(api, "localhost"))  # the other panel origin
        await refused(api, token, None)  # a local program: it would get a local program's rights
        await refused(api, token, CRM)  # a paired page
        api.tokens.pair(CRM, "Acme CRM")
        await refused(api, token, CRM)
        ws, hello = await welcome(api, token, panel_origin(api, "127.0.0.1"))  # still good where it belongs
        assert hello["ok"], hello
        await ws.close()

    run(tmp_path, scenario)
    assert len(failures(caplog)) == 4, failures(caplog)


@pytest.mark.parametrize(
    "bad",
    ["", "resume1", "resume1..", "resume1.\u0661\u0662." + "A" * 43, "resume1.1.\udcff" + "A" * 42, "x" * 10000],
    ids=["empty", "prefix", "dots", "non-ascii-digits", "lone-surrogate", "long"],
)
def test_junk_that_looks_like_a_resume_token_is_refused(tmp_path: Path, bad: str) -> None:
    async def scenario(api: Api) -> None:
        await refused(api, bad, panel_origin(api))

    run(tmp_path, scenario)


# ------------------------------------------------------------ the token store


def test_check_resume_says_why(tmp_path: Path) -> None:
    tokens = TokenStore(tmp_path / "run", tmp_path / "cfg")
    origin = "http://127.0.0.1:8677"
    now = 1_760_000_000.0
    token = tokens.resume_token(origin, now=now)
    assert tokens.check_resume(origin, token, now=now) == "valid"
    assert tokens.check_resume(origin, token, now=now + RESUME_TTL_S) == "valid"
    assert tokens.check_resume(origin, token, now=now + RESUME_TTL_S + 1) == "expired"
    assert tokens.check_resume(origin, token, now=now - 3600) == "invalid"  # issued in the future
    assert tokens.check_resume("http://localhost:8677", token, now=now) == "invalid"
    assert tokens.check_resume(origin, tokens.one_time(), now=now) == "not a resume token"
    # A forged token is "invalid" whatever its time: a forger never learns about the lifetime.
    assert tokens.check_resume(origin, flip(tokens.resume_token(origin, now=0), -3), now=now) == "invalid"


def test_check_resume_compares_in_constant_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import offhook.api.tokens as module

    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(module.hmac, "compare_digest", compare_digest)
    tokens = TokenStore(tmp_path / "run", tmp_path / "cfg")
    token = tokens.resume_token("http://127.0.0.1:8677")
    assert tokens.check_resume("http://127.0.0.1:8677", flip(token, -1)) == "invalid"
    assert compared and compared[-1] == (token.encode(), flip(token, -1).encode())


# ------------------------------------------------------------ the real daemon process


def test_the_real_daemon_accepts_the_panel_after_a_restart_and_logs_no_resume_token(tmp_path: Path) -> None:
    from tests.integration.test_daemon_process import Setup

    setup = Setup(tmp_path)
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/api"
    setup.config.write_text(setup.config.read_text() + f"[api]\nport = {port}\n")

    async def authenticate(token: str, origin: str | None) -> dict[str, Any]:
        async with connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"type": "auth", "token": token}))
            try:
                return dict(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            except ConnectionClosed as exc:
                return {"closed": exc.rcvd.code if exc.rcvd else None}

    async def one_time() -> str:
        async with connect(url) as local:
            await local.send(json.dumps({"type": "auth", "token": TokenStore().user_token()}))
            await local.recv()
            await local.send(json.dumps({"id": 1, "type": "one_time_token"}))
            return str(json.loads(await local.recv())["token"])

    def api_up(starts: int) -> None:
        deadline = time.monotonic() + 10
        while setup.log.read_text().count(f"local API on ws://127.0.0.1:{port}/api") < starts:
            assert time.monotonic() < deadline, setup.log.read_text()
            time.sleep(0.05)

    try:
        setup.start_daemon()
        api_up(1)
        hello = asyncio.run(authenticate(asyncio.run(one_time()), origin))
        first = hello["resume_token"]
        assert setup.daemon is not None
        setup.daemon.terminate()
        setup.daemon.wait(10)
        setup.start_daemon()
        api_up(2)
        back = asyncio.run(authenticate(first, origin))
        assert back.get("type") == "welcome", back
        assert asyncio.run(authenticate(first, None)) == {"closed": 4403}  # not a local program's token
        assert asyncio.run(authenticate(flip(back["resume_token"], -2), origin)) == {"closed": 4403}
        time.sleep(0.3)
        log = setup.log.read_text()
        assert "Traceback" not in log, log
        assert log.count("API authentication failed") == 2, log
        for secret in (first, back["resume_token"], first.rsplit(".", 1)[1], back["resume_token"].rsplit(".", 1)[1]):
            assert secret not in log, log
    finally:
        setup.close()
