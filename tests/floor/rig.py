"""The floor's parts for tests: a real Mosquitto and a real PostgreSQL on free 127.0.0.1 ports, in
temporary directories their users own, central in-process or as a process, and desks.

A part that is missing fails the test (never a skip): `make test` installs them (APT_FLOOR).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pwd
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from offhook.floor import broker as broker_files
from offhook.floor.central import Central
from offhook.floor.client import Broker, FloorClient
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder

if TYPE_CHECKING:
    from offhook.daemon.service import Daemon

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "offhook-pg"  # the Makefile's unprivileged system user: PostgreSQL refuses root
SITE = "hq"
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def owned_tempdir(user: str, prefix: str) -> Path:
    """A fresh directory under /tmp owned by ``user`` (pytest's own tmp dirs are root's, mode 0700)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        pytest.fail(f"system user {user!r} is missing: `make test` creates it (the apt-floor stamp)")
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


def _many_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))


class Mosquitto:
    """`offhook central init`'s files, served by a real Mosquitto 2 on a free port (TLS)."""

    def __init__(self, desks: list[str], *, client_certs: bool = False, log_refusals: bool = True) -> None:
        if shutil.which("mosquitto") is None:
            pytest.fail("mosquitto is not installed: `make test` installs it (APT_FLOOR)")
        self.dir = owned_tempdir("mosquitto", "offhook-mqtt-")
        self.port = free_port()
        self.init = broker_files.init(
            self.dir,
            [broker_files.Desk.parse(f"{SITE}/{name}") for name in desks],
            hosts=["localhost"],
            port=self.port,
            bind="127.0.0.1",
            client_certs=client_certs,
            log_refusals=log_refusals,
        )
        chown_tree(self.dir, "mosquitto")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}"

    @property
    def log(self) -> Path:
        return self.dir / "mosquitto.log"

    def password(self, account: str) -> str:
        return (self.dir / "secrets" / f"{account}.password").read_text().strip()

    def broker(self, account: str, password: str | None = None, port: int | None = None) -> Broker:
        return Broker(
            "localhost",
            port or self.port,
            True,
            account,
            self.password(account) if password is None else password,
            ca_file=str(self.dir / "ca.pem"),
        )

    def floor_config(self, desk: str, team: str = "blue") -> dict[str, Any]:
        return {
            "broker": self.url,
            "username": desk,
            "password_file": str(self.dir / "secrets" / f"{desk}.password"),
            "ca_file": str(self.dir / "ca.pem"),
            "site": SITE,
            "team": team,
            "keepalive_s": 5,
        }

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.dir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_many_files,  # a thousand desks: more sockets than the default 1,024 descriptors
        )
        wait_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    """PostgreSQL 15 run by the unprivileged user in its own temporary directory."""

    def __init__(self) -> None:
        if not (PG_BIN / "pg_ctl").exists():
            pytest.fail(f"PostgreSQL 15 is not installed ({PG_BIN}): `make test` installs it (APT_FLOOR)")
        self.dir = owned_tempdir(PG_USER, "offhook-pg-")
        self.data = self.dir / "data"
        self.port = free_port()
        self._databases = 0
        self._run(PG_BIN / "initdb", "-D", str(self.data), "-A", "trust", "-U", "offhook", "--no-sync")

    def _run(self, *command: object) -> None:
        result = subprocess.run(
            ["runuser", "-u", PG_USER, "--", *map(str, command)], capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr.strip()[-500:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.dir / "log", "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(RuntimeError):
            self._run(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=offhook dbname={database}"

    def new_database(self) -> str:
        self._databases += 1
        name = f"floor_{os.getpid()}_{self._databases}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def query(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql``; none while central has not created its tables yet."""
    with psycopg.connect(dsn) as conn:
        try:
            return list(conn.execute(sql, params).fetchall())
        except psycopg.errors.UndefinedTable:
            return []


def count(dsn: str) -> int:
    rows = query(dsn, "SELECT count(*) FROM calls")
    return int(rows[0][0]) if rows else 0


class CentralTask:
    """`offhook central` in this event loop."""

    def __init__(self, mqtt: Mosquitto, dsn: str, account: str = "central-1", **kwargs: Any) -> None:
        self.central = Central(mqtt.broker(account), dsn, instance=account, **kwargs)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Central:
        self.task = asyncio.create_task(self.central.run())
        await asyncio.wait_for(self.central.ready.wait(), 10)
        return self.central

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.central.closed = True
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 15)  # a hang here fails the test instead of stalling the run


class CentralProcess:
    """`offhook central run` as a real process (kill -9 tests)."""

    def __init__(self, mqtt: Mosquitto, dsn: str, account: str = "central-1", broker_log: bool = False) -> None:
        command = [sys.executable, "-m", "offhook.cli", "central", "run", "--db", dsn, "--broker", mqtt.url]
        command += ["--username", account, "--password-file", str(mqtt.dir / "secrets" / f"{account}.password")]
        command += ["--ca-file", str(mqtt.dir / "ca.pem"), "--instance", account]
        if broker_log:
            command += ["--broker-log", str(mqtt.log)]
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="offhook-central-", suffix=".log")[1])

    def start(self) -> None:
        handle = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(self.command, stdout=handle, stderr=handle, cwd=REPO_ROOT)
        handle.close()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Moment:
    """A desk Record (moment, call id, monotonic time, data), as MetricsSink takes it."""

    moment: str
    call_id: str
    at: float
    data: dict[str, Any]


class SinkDesk:
    """A desk's metrics store fed through the real MetricsSink, with its floor client (no unit)."""

    def __init__(self, mqtt: Mosquitto, name: str, workdir: Path, port: int | None = None, **client: Any) -> None:
        self.name = name
        self.recorder = CallRecorder(workdir / name / "metrics.sqlite3")
        self.sink = MetricsSink(self.recorder, agent=f"agent-{name}", tz="Europe/Berlin")
        client.setdefault("keepalive", 5)
        self.client = FloorClient(
            mqtt.broker(name, port=port),
            site=SITE,
            desk=name,
            team="blue",
            recorder=self.recorder,
            **client,
        )
        self.task: asyncio.Task[None] | None = None
        self.mono = 1000.0
        self.calls = 0

    def start(self) -> None:
        self.client.closed = False
        self.task = self.client.task = asyncio.create_task(self.client.run())

    async def stop(self) -> None:
        await self.client.close(goodbye=False)
        self.task = None

    def call(self, call_id: str | None = None, *, hold: bool = False, missed: bool = False) -> str:
        """One whole call (ring, answer, hold, hang-up, wrap-up end), recorded at once."""
        self.calls += 1
        call_id = call_id or f"{self.name}-call-{self.calls}@pbx"
        steps = [("ringing", {"direction": "inbound", "peer": f"+49301234{self.calls:04d}"})]
        if missed:
            steps.append(("missed", {}))
        else:
            steps.append(("answered", {}))
            if hold:
                steps += [("hold_started", {}), ("hold_ended", {})]
            steps += [("hung_up", {}), ("wrap_up_ended", {})]
        for moment, data in steps:
            self.mono += 1.5
            self.sink(Moment(moment, call_id, self.mono, data))
        self.client.event({"event": "recorded", "moment": steps[-1][0], "call": call_id})
        return call_id


def unit_daemon(port: Path, workdir: Path, name: str) -> tuple[Daemon, CallRecorder]:
    """A real daemon (API softphone, serial transport) on a simulated unit's ``port``, its calls
    recorded under ``agent-<name>`` in ``workdir``; not yet running."""
    from offhook import config
    from offhook.daemon.service import Daemon
    from offhook.softphone.web import WebSoftphone
    from offhook.transport.serial import SerialTransport

    cfg = config.validate({"unit": {"port": str(port)}, "softphone": {"kind": "api"}})
    recorder = CallRecorder(workdir / "data" / "metrics.sqlite3")
    sink = MetricsSink(recorder, agent=f"agent-{name}", tz="UTC")
    daemon = Daemon(cfg, WebSoftphone(), workdir / "state.json", recorder=sink, transport_factory=SerialTransport)
    return daemon, recorder


class Cable:
    """A TCP proxy in front of the broker that can be cut like a network: connections are reset (no
    MQTT DISCONNECT, so the broker publishes the desk's last will) and new ones fail until mended."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut_off = False
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Cable:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    def mend(self) -> None:
        self.cut_off = False

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._links |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


def run(scenario: Any, timeout: float = 60.0) -> None:
    """asyncio.run with a deadline; garbage is collected while the loop still runs (paho's
    clients close their sockets in __del__, which needs the loop)."""

    async def main() -> None:
        try:
            await asyncio.wait_for(scenario, timeout)
        finally:
            gc.collect()
            await asyncio.sleep(0.05)

    asyncio.run(main())


async def until(predicate: Any, timeout: float = 10.0, every: float = 0.05) -> float:
    """Wait until ``predicate()`` (sync or async) is true; returns the seconds it took."""
    started = time.monotonic()
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not true within {timeout} s")
        await asyncio.sleep(every)
