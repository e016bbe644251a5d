"""A local program's side of the API: find the running daemon, ask for its unit, borrow it.

Fleet tools (`offhook flash`, `offhook devices`) use this for the unit a running daemon owns;
other units they open directly.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from offhook.api.tokens import TokenStore


class DaemonRefused(RuntimeError):
    """The daemon answered with an error (the message is its reason)."""


async def _request(ws: ClientConnection, **message: Any) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("type") == "event":
            continue
        if not reply.get("ok"):
            raise DaemonRefused(str(reply.get("error", "refused")))
        return reply


@contextlib.asynccontextmanager
async def session(port: int, tokens: TokenStore | None = None) -> AsyncIterator[ClientConnection]:
    """An authenticated connection to the daemon on 127.0.0.1:``port``; OSError if none runs."""
    tokens = tokens or TokenStore()
    async with connect(f"ws://127.0.0.1:{port}/api", open_timeout=2) as ws:
        await _request(ws, type="auth", token=tokens.user_token())
        yield ws


async def daemon_unit(port: int, tokens: TokenStore | None = None) -> dict[str, Any] | None:
    """The unit the running daemon owns (HELLO fields, path, transport), or None (no daemon, no unit)."""
    try:
        async with session(port, tokens) as ws:
            unit = (await _request(ws, type="unit"))["unit"]
            return unit if isinstance(unit, dict) else None
    except (OSError, DaemonRefused, TimeoutError):
        return None


@contextlib.asynccontextmanager
async def borrowed_unit(port: int, tokens: TokenStore | None = None) -> AsyncIterator[str]:
    """Borrow the daemon's unit: yields its port path; the daemon takes it back on exit.

    Raises DaemonRefused with the daemon's reason (e.g. a call in progress).
    """
    async with session(port, tokens) as ws:
        lent = await _request(ws, type="lend_unit")
        try:
            yield str(lent["path"])
        finally:
            with contextlib.suppress(Exception):
                await _request(ws, type="return_unit")
