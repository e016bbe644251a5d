"""Security of the daemon as a whole process: no secret ever reaches its logs.

(Admission rules of the local API, loopback binding and the 0600 token file are tested in
tests/integration/test_api.py; config limits in tests/host/test_config.py.)
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path

from websockets.asyncio.client import connect

from offhook.api.tokens import TokenStore
from offhook.softphone.baresip_process import free_port
from tests.integration.test_daemon_process import Setup

CRM = "https://crm.example.com"


def test_tokens_never_appear_in_the_daemon_log(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    api_port = free_port()
    setup.config.write_text(setup.config.read_text() + f'[api]\nport = {api_port}\nallowed_origins = ["{CRM}"]\n')
    try:
        setup.start_daemon()
        setup.wait(lambda s: s["agent"] == "available")
        deadline = time.monotonic() + 10
        while not (port := re.search(r"local API on ws://127\.0\.0\.1:(\d+)/api", setup.log.read_text())):
            assert time.monotonic() < deadline, setup.log.read_text()
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{port.group(1)}/api"
        user_token = TokenStore().user_token()

        async def talk() -> tuple[str, str]:
            async with connect(url) as local:
                await local.send(json.dumps({"type": "auth", "token": user_token}))
                await local.recv()
                await local.send(json.dumps({"id": 1, "type": "one_time_token"}))
                one_time = json.loads(await local.recv())["token"]
            async with connect(url, origin=CRM) as page:  # type: ignore[arg-type]
                await page.send(json.dumps({"type": "pair", "name": "Acme CRM"}))
                await asyncio.sleep(0.3)
                await asyncio.to_thread(setup.sim.ask, cmd="press", button="hook")  # the agent approves
                paired = json.loads(await page.recv())["token"]
            async with connect(url) as wrong:
                await wrong.send(json.dumps({"type": "auth", "token": user_token[::-1]}))  # a failed attempt
                await asyncio.sleep(0.2)
            return one_time, paired

        one_time, paired = asyncio.run(talk())
        time.sleep(0.3)
        log = setup.log.read_text()
        assert "paired origin https://crm.example.com" in log  # the log does speak about it...
        for secret in (user_token, user_token[::-1], one_time, paired):
            assert secret not in log  # ...but never of the secrets
        origin_hash = TokenStore().paired()[CRM]["sha256"]
        assert str(origin_hash) not in log
    finally:
        setup.close()
