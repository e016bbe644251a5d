"""Central's web side for tests: central with HTTPS in this event loop or as a process, tokens, and
an HTTPS client that trusts `offhook central init`'s test CA."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from offhook.floor import auth
from offhook.floor.central import Central
from offhook.floor.web import FloorWeb, server_ssl
from tests.floor.rig import REPO_ROOT, Mosquitto, free_port, wait_port

# `python -m offhook.cli` runs cli.py as __main__, whose UsageError is not the one commands raise
# (a usage error would exit 1 with a traceback): run main() from the imported module instead.
OFFHOOK = [sys.executable, "-c", "import sys; from offhook.cli import main; sys.exit(main())"]


def web_for(central: Central, mqtt: Mosquitto, dsn: str, port: int = 0, **kwargs: Any) -> FloorWeb:
    """Central's web side on ``port`` with init's server certificate (localhost, 127.0.0.1)."""
    web = FloorWeb(dsn, ssl_context=server_ssl(mqtt.dir / "server.pem", mqtt.dir / "server.key"), port=port, **kwargs)
    central.ingest.on_live = web.live
    central.services.append(web.run)
    return web


def make_token(dsn: str, role: str, name: str) -> str:
    """A token made as `offhook central token create` makes it (the tables exist once central ran)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        secret, _ = auth.create_token(conn, role, name)
    return secret


def client_ssl(mqtt: Mosquitto) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(mqtt.dir / "ca.pem"))


class CentralWebProcess:
    """`offhook central run --https …` as a real process: killed and started again in tests."""

    def __init__(self, mqtt: Mosquitto, dsn: str, *, hold_reminder_s: float = 120.0, port: int = 0) -> None:
        self.port = port or free_port()
        secrets = mqtt.dir / "secrets"
        self.command = [*OFFHOOK, "central", "run", "--db", dsn, "--broker", mqtt.url]
        self.command += ["--username", "central-1", "--password-file", str(secrets / "central-1.password")]
        self.command += ["--ca-file", str(mqtt.dir / "ca.pem"), "--instance", "central-1"]
        self.command += ["--https", f"127.0.0.1:{self.port}", "--tls-cert", str(mqtt.dir / "server.pem")]
        self.command += ["--tls-key", str(mqtt.dir / "server.key"), "--hold-reminder-s", str(hold_reminder_s)]
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="offhook-central-web-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    async def start(self) -> None:
        handle = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(self.command, stdout=handle, stderr=handle, cwd=REPO_ROOT)
        handle.close()
        await asyncio.to_thread(wait_port, self.port, 30.0, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


async def get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with session.get(url, allow_redirects=False, **kwargs) as answer:
        text = await answer.text()
        with contextlib.suppress(ValueError):
            return answer.status, json.loads(text)
        return answer.status, text
