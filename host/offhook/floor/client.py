"""The daemon's floor client: live state, inventory, alerts and call records to the broker.

Two sans-IO cores and one IO shell:

- :class:`DeskFeed` turns the daemon's listener events into MQTT messages: the live status
  (retained, numbered ``(run, seq)`` so no reader applies an older state over a newer one),
  the unit's inventory (retained) and alerts. Only the latest state and inventory matter, so
  while the broker is away they are kept, not queued.
- :class:`Outbox` is the exactly-once half: a cursor over the store's completed calls
  (``CallRecorder.floor_pending``). One batch is in flight at a time; the cursor advances only
  on central's acknowledgement (the highest record it committed to PostgreSQL), and a batch
  not acknowledged in time is sent again from the cursor. Central upserts by (store id, call
  id), so a replay changes nothing: MQTT may lose or repeat a message, the record lands once.
- :class:`FloorClient` runs both over one aiomqtt (MQTT 5) connection, reconnecting with
  backoff. Its seams: the broker (aiomqtt), the clock, and the store (CallRecorder).
- Floor-wide settings: central's policy for this desk (retained) is checked whole with
  ``settings.check_policy`` and handed to the daemon (``Daemon.set_policy``, applied when idle). A
  bad or forged one is refused and reported; the last good one stays. The desk's effective
  settings (the unit's part included: the daemon sends those to its unit) are published
  (retained) whenever they change.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from offhook import settings
from offhook.floor import schema as S
from offhook.metrics import privacy
from offhook.metrics.store import CallRecorder, store_id

log = logging.getLogger("offhook.floor")

ACK_TIMEOUT_S = 5.0  # a batch not acknowledged by then is sent again from the cursor
POLL_S = 5.0  # the outbox also looks for calls completed without an event (a restart closed them)
MAX_BACKOFF_S = 10.0
MAX_QUEUED_ALERTS = 100


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True)
class Broker:
    """Where and how a desk (or central) reaches the broker; from the ``[floor]`` config."""

    host: str
    port: int
    tls: bool
    username: str
    password: str | None = None
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def __repr__(self) -> str:  # never show the password
        return f"Broker({self.host!r}, {self.port}, tls={self.tls}, username={self.username!r})"

    @classmethod
    def from_config(cls, floor: dict[str, Any]) -> Broker:
        parts = urlsplit(floor["broker"])
        tls = parts.scheme == "mqtts"
        password = None
        if floor.get("password_file"):
            password = Path(floor["password_file"]).read_text().strip()
        return cls(
            host=parts.hostname or "",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=floor["username"],
            password=password,
            ca_file=floor.get("ca_file", ""),
            cert_file=floor.get("cert_file", ""),
            key_file=floor.get("key_file", ""),
        )

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file or None)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file or None)
        return context

    def client(self, identifier: str, *, will: Publish | None = None, keepalive: int = 30) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=None if will is None else aiomqtt.Will(will.topic, will.payload, qos=will.qos, retain=will.retain),
            keepalive=keepalive,
            tls_context=self.tls_context(),
            timeout=10.0,
        )


def status_of(snapshot: dict[str, Any]) -> tuple[str, float | None]:
    """The live status a desk shows on the floor, and how long its call has been held (else None)."""
    states = [call.get("state") for call in snapshot.get("calls", [])]
    if "active" in states or "dialing" in states:
        return "on_call", None
    if "held" in states:
        held = [call.get("held_s") or 0.0 for call in snapshot["calls"] if call.get("state") == "held"]
        return "on_hold", float(max(held))
    if "ringing" in states:
        return "ringing", None
    agent = snapshot.get("agent", "offline")
    return (agent if agent in ("wrap_up", "break", "available") else "offline"), None


class DeskFeed:
    """Daemon events in, MQTT messages out (sans-IO: the wall clock is passed in)."""

    def __init__(
        self, site: str, desk: str, team: str, run: int, wall: Callable[[], float] = time.time, agent: str = ""
    ) -> None:
        self.site, self.desk, self.team, self.run = site, desk, team, run
        self.agent = agent  # who is signed in at this desk (the daemon's user): names the wallboard's tile
        self.wall = wall
        self.seq = 0
        self.state: Publish | None = None  # the latest live state (re-sent after a reconnect)
        self.inventory: Publish | None = None
        self.settings: Publish | None = None  # the latest effective-settings report
        self.refused: str | None = None  # why the last policy received was refused (None: it was not)
        self.alerts: collections.deque[Publish] = collections.deque(maxlen=MAX_QUEUED_ALERTS)
        self._status: tuple[str, str, str, int] | None = None
        self._since = 0.0
        self._hold_since: float | None = None
        self._alerted_holds: set[tuple[str, float]] = set()

    def topic(self, kind: str) -> str:
        return S.topic(self.site, self.desk, kind)

    def presence(self, online: bool, session: int) -> Publish:
        """Numbered so a session's last will (offline) sorts after its own online, before the next one's."""
        body: dict[str, Any] = {
            "run": self.run,
            "seq": session * 2 + (0 if online else 1),
            "online": online,
            "ts": round(self.wall(), 3),
            "team": self.team,
        }
        return Publish(self.topic(S.PRESENCE), S.encode(body), retain=True)

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def event(self, message: dict[str, Any], unit: dict[str, Any] | None = None) -> list[Publish]:
        """One daemon listener message; ``unit`` is the inventory when a unit (re)connected."""
        kind = message.get("event")
        now = self.wall()
        if kind == "state":
            return self._state(message, now)
        if kind == "settings":
            return [self.settings_report(message)]
        if kind == "hold_reminder":
            call = str(message.get("call", ""))
            key = (call, round(self._hold_since or 0.0, 1))
            if key in self._alerted_holds:  # one alert per hold, however many reminders follow
                return []
            self._alerted_holds.add(key)
            return [self._alert("long_hold", call, now)]
        if kind == "missed_call":
            return [self._alert("missed_call", str(message.get("call", "")), now)]
        if kind == "unit":
            connected = bool(message.get("connected"))
            info = dict(unit or {}) if connected else self._last_unit()
            body: dict[str, Any] = {
                key: str(info.get(key, "")) for key in ("serial", "board", "firmware", "slot", "health")
            }
            body.update(transport=str(info.get("transport", "")), connected=connected, ts=round(now, 3))
            body.update(run=self.run, seq=self._next())
            self.inventory = Publish(self.topic(S.INVENTORY), S.encode(body), retain=True)
            out = [self.inventory]
            if not connected:
                out.append(self._alert("unit_lost", None, now))
            return out
        return []

    def settings_report(self, report: dict[str, Any]) -> Publish:
        """The daemon's settings_report() (or its "settings" event), with the last refusal."""
        body = {key: report.get(key) for key in ("version", "pending", "effective")}
        body["refused"] = self.refused
        if report.get("unit") is not None:
            body["unit"] = report["unit"]
        self.settings = Publish(self.topic(S.SETTINGS), S.encode(body), retain=True)
        return self.settings

    def _last_unit(self) -> dict[str, Any]:
        if self.inventory is None:
            return {}
        return S.decode(S.INVENTORY, self.inventory.payload)

    def _state(self, snapshot: dict[str, Any], now: float) -> list[Publish]:
        status, held_s = status_of(snapshot)
        key = (status, str(snapshot.get("agent", "")), str(snapshot.get("call", "")), len(snapshot.get("calls", [])))
        if key == self._status:
            return []
        if self._status is None or key[0] != self._status[0]:
            self._since = now
            self._hold_since = None if held_s is None else now - held_s
        self._status = key
        body = {
            "run": self.run,
            "seq": self._next(),
            "status": status,
            "agent": key[1],
            "call": key[2],
            "calls": key[3],
            "since": round(self._since, 3),
            "hold_since": None if self._hold_since is None else round(self._hold_since, 3),
            "ts": round(now, 3),
            "team": self.team,
        }
        if self.agent:
            body["name"] = self.agent
        self.state = Publish(self.topic(S.STATE), S.encode(body), retain=True)
        return [self.state]

    def _alert(self, kind: str, call: str | None, now: float) -> Publish:
        body = {"run": self.run, "seq": self._next(), "kind": kind, "call": call, "ts": round(now, 3)}
        alert = Publish(self.topic(S.ALERTS), S.encode(body))
        self.alerts.append(alert)
        return alert


@dataclass
class Outbox:
    """The record cursor (sans-IO): what to send next, and when to send it again."""

    store: str
    acked: int
    ack_timeout_s: float = ACK_TIMEOUT_S
    sent_upto: int = field(init=False)
    sent_at: float | None = field(default=None, init=False)  # monotonic time of the batch in flight

    def __post_init__(self) -> None:
        self.sent_upto = self.acked

    @property
    def in_flight(self) -> bool:
        return self.sent_at is not None

    def sent(self, upto: int, now: float) -> None:
        self.sent_upto, self.sent_at = upto, now

    def on_ack(self, store: str, upto: int) -> bool:
        """Central's acknowledgement; True when the cursor advanced (persist it)."""
        if store != self.store:
            return False
        advanced = upto > self.acked
        self.acked = max(self.acked, upto)
        if self.acked >= self.sent_upto:
            self.sent_upto, self.sent_at = self.acked, None
        return advanced

    def check(self, now: float) -> bool:
        """True when the batch in flight timed out: the next one starts again at the cursor."""
        if self.sent_at is not None and now - self.sent_at >= self.ack_timeout_s:
            self.rewind()
            return True
        return False

    def rewind(self) -> None:
        self.sent_upto, self.sent_at = self.acked, None

    def wait_s(self, now: float) -> float:
        return POLL_S if self.sent_at is None else max(0.0, self.sent_at + self.ack_timeout_s - now)


def record_body(row: dict[str, Any], hashing: privacy.NumberPolicy) -> dict[str, Any]:
    """A store row as a record on the wire; a number kept in plain (policy "plain") is hashed first."""
    record = {("seq" if key == "floor_seq" else key): value for key, value in row.items()}
    number = record.get("number")
    if number is not None and not str(number).startswith(privacy.HASH_PREFIX):
        record["number"] = hashing.store(str(number))
    if record.get("outcome") is None:
        record["outcome"] = ""
    return record


def next_run(path: Path) -> int:
    """This daemon run's number (persisted): state and alert sequence numbers are (run, seq)."""
    try:
        run = int(path.read_text().strip()) + 1
    except (OSError, ValueError):
        run = int(time.time())  # a first run, or a lost file: still above any earlier run's number
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(run))
    tmp.replace(path)
    return run


class FloorClient:
    """One desk's connection to the floor. ``publish``/``event`` are safe to call at any time."""

    def __init__(
        self,
        broker: Broker,
        *,
        site: str,
        desk: str,
        team: str,
        recorder: CallRecorder,
        run: int | None = None,
        keepalive: int = 30,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        agent: str = "",
    ) -> None:
        self.broker = broker
        self.recorder = recorder
        self.keepalive = keepalive
        self.clock = clock
        run = next_run(recorder.path.parent / "floor-run") if run is None else run
        self.feed = DeskFeed(site, desk, team, run, wall, agent)
        sid = store_id(recorder.conn)
        if sid is None:
            raise ValueError(f"{recorder.path} has no store id")
        self.outbox = Outbox(sid, recorder.floor_enable(), ack_timeout_s)
        self.hashing = privacy.NumberPolicy("hash", recorder.numbers.salt_path)
        self.connected = asyncio.Event()
        self.counters: collections.Counter[str] = collections.Counter()
        self._queue: asyncio.Queue[Publish] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        # Floor-wide settings: where a checked policy goes (Daemon.set_policy) and where the
        # effective settings come from (Daemon.settings_report); without them policies are ignored.
        self.on_policy: Callable[[settings.Policy], None] | None = None
        self.settings_source: Callable[[], dict[str, Any]] | None = None
        # Staged rollouts: where central's checked update goes (DeskUpdates.on_update); without it
        # the desk does not subscribe to its update topic. The last status is sent again on reconnect.
        self.on_update: Callable[[dict[str, Any]], None] | None = None
        self.last_update_status: Publish | None = None

    def event(self, message: dict[str, Any], unit: dict[str, Any] | None = None) -> None:
        """A daemon listener message (synchronous, never raises into the daemon)."""
        try:
            for publish in self.feed.event(message, unit):
                if self.connected.is_set():
                    self._queue.put_nowait(publish)
            if message.get("event") == "recorded":
                self._wake.set()
        except Exception:
            log.exception("floor: event %s not handled", message.get("event"))

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._session()
            except (aiomqtt.MqttError, OSError) as exc:  # ssl.SSLError is an OSError
                self.counters["disconnects"] += 1
                where = f"{self.broker.host}:{self.broker.port}"
                log.warning("floor: broker %s: %s; retrying in %.1f s", where, exc, backoff)
            finally:
                self.connected.clear()
                self._client = None
                self.outbox.rewind()
            if self.closed or cancelled():  # a cancel can surface from aiomqtt's exit as an MqttError
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            if self.counters["sessions"]:
                backoff = min(backoff, 1.0)  # a broker that was up comes back soon: retry briskly

    async def stop(self) -> None:
        """Say goodbye (offline, retained) when still connected."""
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError, asyncio.TimeoutError):
                await asyncio.wait_for(self._send(client, self.feed.presence(False, self.counters["sessions"])), 2.0)

    async def close(self, goodbye: bool = True) -> None:
        """Stop for good (the daemon is stopping); ``goodbye``: say offline first."""
        if goodbye:
            await self.stop()
        self.closed = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self.task, 5.0)  # a daemon stopping never waits on the broker for long

    async def _session(self) -> None:
        feed = self.feed
        session = self.counters["sessions"] + 1
        will = feed.presence(False, session)
        async with self.broker.client(feed.desk, will=will, keepalive=self.keepalive) as client:
            self._client = client
            self.counters["sessions"] = session
            await client.subscribe(feed.topic(S.ACK), qos=1)
            if self.on_policy is not None:
                await client.subscribe(feed.topic(S.POLICY), qos=1)
            if self.on_update is not None:
                await client.subscribe(feed.topic(S.UPDATE), qos=1)
            self._queue = asyncio.Queue()
            await self._send(client, feed.presence(True, session))
            # The latest of each kind, and the alerts held. Until `connected` is set an event only
            # updates the feed, so what changed while these were on their way (the unit connected:
            # a new inventory) goes in the next round; `connected` is set with nothing left.
            sent: list[Publish] = []
            while due := [
                publish
                for publish in (feed.inventory, feed.state, feed.settings, self.last_update_status, *feed.alerts)
                if publish is not None and publish not in sent
            ]:
                for publish in due:
                    await self._send(client, publish)
                    sent.append(publish)
                    if publish in feed.alerts:
                        feed.alerts.remove(publish)
            self.connected.set()
            log.info("floor: connected to %s:%d as %s", self.broker.host, self.broker.port, feed.desk)
            await together(self._publisher(client), self._outbox_loop(client), self._acks(client))

    async def _send(self, client: aiomqtt.Client, publish: Publish) -> None:
        await client.publish(publish.topic, publish.payload, qos=publish.qos, retain=publish.retain)
        self.counters["published"] += 1

    async def _publisher(self, client: aiomqtt.Client) -> None:
        while True:
            publish = await self._queue.get()
            await self._send(client, publish)
            if publish.topic.endswith(S.ALERTS):
                with contextlib.suppress(ValueError):
                    self.feed.alerts.remove(publish)

    async def _acks(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if str(message.topic).endswith("/" + S.POLICY):
                self.policy(bytes(message.payload))
                continue
            if str(message.topic).endswith("/" + S.UPDATE):
                self.update(bytes(message.payload))
                continue
            try:
                body = S.decode(S.ACK, bytes(message.payload))
            except (S.SchemaError, TypeError) as exc:
                log.warning("floor: ack refused: %s", exc)
                continue
            if self.outbox.on_ack(body["store"], body["upto"]):
                await asyncio.to_thread(self.recorder.floor_ack, self.outbox.acked)
            self._wake.set()

    def policy(self, payload: bytes) -> None:
        """Central's policy for this desk: checked whole, handed to the daemon, or refused and reported."""
        try:
            body = S.decode(S.POLICY, payload)
            body.pop("v")
            policy = settings.check_policy(body)
        except (S.SchemaError, settings.PolicyError) as exc:
            self.counters["policy_refused"] += 1
            self.feed.refused = str(exc)[:500]
            log.warning("floor: policy refused, the last good settings stay: %s", self.feed.refused)
        else:
            self.feed.refused = None
            if self.on_policy is not None:
                self.on_policy(policy)
        self.report_settings()

    def update(self, payload: bytes) -> None:
        """Central's update for this desk (a bundle to fetch, or a cancel): checked, then handed on."""
        if not payload:
            return  # a retained update cleared
        try:
            body = S.decode(S.UPDATE, payload)
        except S.SchemaError as exc:
            self.counters["update_refused"] += 1
            log.warning("floor: update refused: %s", exc)
            return
        body.pop("v")
        if self.on_update is not None:
            try:
                self.on_update(body)
            except Exception:
                log.exception("floor: update %s not handled", body["rollout"][:64])

    def update_status(self, body: dict[str, Any]) -> None:
        """A phase of central's update (DeskUpdates.publish): sent now, and again after a reconnect."""
        body = {**body, "reason": str(body.get("reason", ""))[:256]}
        publish = Publish(self.feed.topic(S.UPDATE_STATUS), S.encode(body), retain=True)
        S.decode(S.UPDATE_STATUS, publish.payload)  # never send what central would refuse
        self.last_update_status = publish
        if self.connected.is_set():
            self._queue.put_nowait(publish)

    def report_settings(self) -> None:
        """Publish the effective settings now (also when the unit's part of them changed)."""
        if self.settings_source is not None:
            publish = self.feed.settings_report(self.settings_source())
            if self.connected.is_set():
                self._queue.put_nowait(publish)

    async def _outbox_loop(self, client: aiomqtt.Client) -> None:
        outbox = self.outbox
        topic = self.feed.topic(S.RECORDS)
        while True:
            outbox.check(self.clock())
            if not outbox.in_flight:
                after = outbox.sent_upto
                rows = await asyncio.to_thread(self.recorder.floor_pending, after, S.MAX_BATCH)
                if rows:
                    records = [record_body(row, self.hashing) for row in rows]
                    outbox.sent(records[-1]["seq"], self.clock())
                    body = {"store": outbox.store, "after": after, "records": records}
                    await self._send(client, Publish(topic, S.encode(body)))
                    self.counters["records_sent"] += len(records)
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), outbox.wait_s(self.clock()))
            self._wake.clear()


def cancelled() -> bool:
    """Whether this task was asked to stop (a cancel aiomqtt may have turned into an MqttError)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def together(*loops: Coroutine[Any, Any, None]) -> None:
    """Run a session's loops until one ends or fails (its error raised as is); the others are
    cancelled. Not a TaskGroup: its cancel of the caller would stay counted on a failure here, and
    a reconnecting loop could then no longer tell a real cancel from a lost connection."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


def inventory_of(daemon: Any) -> dict[str, Any]:
    """The unit's inventory from a daemon that has one (serial, board, firmware, slot, health, transport)."""
    unit = daemon.unit
    if unit is None:
        return {}
    hello = unit.hello or {}
    return {
        "serial": unit.serial,
        "board": unit.board,
        "firmware": unit.firmware,
        "slot": str(hello.get("slot", "")),
        "health": str(hello.get("health", "")),
        "transport": daemon.unit_transport,
    }


def attach(daemon: Any, floor: dict[str, Any], recorder: CallRecorder, **kwargs: Any) -> FloorClient:
    """Subscribe a floor client to ``daemon.listeners`` and run it as a task (``client.task``)."""
    client = FloorClient(
        Broker.from_config(floor),
        site=floor["site"],
        desk=floor["username"],
        team=floor["team"],
        recorder=recorder,
        keepalive=int(floor.get("keepalive_s", 30)),
        agent=str(getattr(daemon.recorder, "agent", "") or ""),  # the metrics sink's agent, as records name it
        **kwargs,
    )

    def listener(message: dict[str, Any]) -> None:
        unit = inventory_of(daemon) if message.get("event") == "unit" and message.get("connected") else None
        client.event(message, unit)

    # The daemon applies a policy when idle, its unit settings through its own session; each
    # change (and the unit's answer) comes back as a "settings" event with the unit's part in it.
    client.on_policy = daemon.set_policy
    client.settings_source = daemon.settings_report
    client.feed.settings_report(client.settings_source())
    daemon.listeners.append(listener)
    if floor.get("central_url"):  # staged rollouts: central's updates to the daemon's update relay
        from offhook.floor.desk_updates import DeskUpdates

        desk_updates = DeskUpdates(
            daemon.updates,
            floor["central_url"],
            recorder.path.parent / "bundles",
            client.update_status,
            tz=str(daemon.config.get("agent", {}).get("timezone", "")),
            ssl=ssl.create_default_context(cafile=floor.get("ca_file") or None),
        )
        client.on_update = desk_updates.on_update
        daemon.listeners.append(desk_updates.on_event)
    if daemon.unit is not None and daemon.unit_connected.is_set():
        listener({"event": "unit", "connected": True})
    listener({"event": "state", **daemon.desk.snapshot()})
    client.task = asyncio.create_task(client.run(), name="floor")
    return client
