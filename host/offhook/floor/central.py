"""`offhook central`: the floor's service, from the broker into PostgreSQL.

- :class:`Ingest` (sans-IO) checks each message against the schema and folds it into the next
  :class:`~offhook.floor.pgstore.Batch`: records keyed by (store, call id), only the newest live
  state, inventory and presence of each desk. A bad message is counted and logged in one line
  (its kind and why, never its payload), and ingest goes on.
- :class:`Central` runs it: MQTT 5 shared subscriptions for records and alerts (instances split
  them), plain subscriptions for the retained live state, inventory and presence (every
  instance sees every desk; the (run, seq) guard makes the writes commute). A batch is written
  every ``flush_s`` in one transaction; the acknowledgements go out after the commit. When
  PostgreSQL is away the batch is kept and merged with what follows, and written when it is
  back; nothing is acknowledged meanwhile, so desks keep their records.
- ACL refusals happen in the broker, which tells only the publisher. Central counts them from
  the broker's log when given it (``--broker-log``; Mosquitto logs them at ``log_type debug``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg

from offhook.floor import pgstore
from offhook.floor import schema as S
from offhook.floor.client import Broker, Publish, cancelled, together
from offhook.floor.policy import PolicyService
from offhook.floor.rollouts import RolloutService

log = logging.getLogger("offhook.central")

FLUSH_S = 0.05
FLUSH_AT = 5000  # records or states pending: write now
# Database reconnects at most this far apart: live state must be true within 2 s of the
# database's return, and one connection attempt a second per central costs it nothing.
DB_BACKOFF_S = 1.0
# Errors of a write that another central instance's write crossed: the batch is written again.
RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
COUNTED = ("malformed", "oversize", "unknown_schema", "unknown_topic", "refused_store", "acl_denied", "auth_refused")


LOG_LINES_PER_MINUTE = 20  # per reason: a desk flooding bad messages must not flood the log too


class Ingest:
    """Messages in, batches out (sans-IO; the clock only paces the refusal log)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.batch = pgstore.Batch()
        self.counters: collections.Counter[str] = collections.Counter({name: 0 for name in COUNTED})
        self.clock = clock
        self._logged: dict[str, tuple[float, int, int]] = {}  # reason: (minute start, lines, unlogged)
        # The wallboard and inventory (web.py): each accepted state, presence, inventory and records body,
        # as (kind, site, desk, body).
        self.on_live: Callable[[str, str, str, dict[str, Any]], None] | None = None
        # Floor-wide settings (policy.py): each desk's effective-settings report, as (site, desk, body).
        self.on_settings: Callable[[str, str, dict[str, Any]], None] | None = None
        # Staged rollouts (rollouts.RolloutService): each desk's update phase, as (site, desk, body).
        self.on_update_status: Callable[[str, str, dict[str, Any]], None] | None = None

    def refuse(self, reason: str, what: str) -> None:
        self.counters[reason] += 1
        now = self.clock()
        start, lines, unlogged = self._logged.get(reason, (now, 0, 0))
        if now - start >= 60.0:
            start, lines = now, 0
        if lines >= LOG_LINES_PER_MINUTE:
            self._logged[reason] = (start, lines, unlogged + 1)
            return
        more = f", {unlogged} more not logged" if unlogged else ""
        log.warning("central: refused %s (%s; %d so far%s)", what, reason, self.counters[reason], more)
        self._logged[reason] = (start, lines + 1, 0)

    def message(self, topic: str, payload: bytes) -> None:
        try:
            where = S.parse_topic(topic)
        except S.SchemaError as exc:
            # The topic itself is not logged: a bad one may carry anything, a number included.
            self.refuse("unknown_topic" if "unknown" in str(exc) else "malformed", f"a message: {exc}")
            return
        if where.kind in S.CENTRAL_KINDS:
            return  # central's own acknowledgements and policies
        try:
            body = S.decode(where.kind, payload)
        except S.SchemaError as exc:
            text = str(exc)
            reason = (
                "oversize" if text.startswith("oversize") else "unknown_schema" if "version" in text else "malformed"
            )
            self.refuse(reason, f"{where.kind} from {where.site}/{where.desk}: {text}")
            return
        self.counters["accepted"] += 1
        key = (where.site, where.desk)
        batch = self.batch
        if where.kind == S.RECORDS:
            store = body["store"]
            for record in body["records"]:
                old = batch.records.get((store, record["call_id"]))
                if old is None or old[2]["seq"] < record["seq"]:
                    batch.records[(store, record["call_id"])] = (where.site, where.desk, record)
            batch.batches.append((where.site, where.desk, store, body["records"][-1]["seq"]))
            self.counters["records_received"] += len(body["records"])
            if self.on_live is not None:  # the wallboard learns the desk's agent name at once
                self.on_live(where.kind, where.site, where.desk, body)
        elif where.kind == S.ALERTS:
            batch.alerts.append((where.site, where.desk, body))
        elif where.kind == S.SETTINGS:
            if self.on_settings is not None:  # floor/policy.py keeps it (desk_settings)
                self.on_settings(where.site, where.desk, body)
        elif where.kind == S.UPDATE_STATUS:
            if self.on_update_status is not None:
                self.on_update_status(where.site, where.desk, body)
        else:
            table = {S.STATE: batch.states, S.INVENTORY: batch.inventory, S.PRESENCE: batch.presence}[where.kind]
            old_body = table.get(key)
            if old_body is None or (old_body["run"], old_body["seq"]) < (body["run"], body["seq"]):
                table[key] = body
            if self.on_live is not None:
                self.on_live(where.kind, where.site, where.desk, body)

    def pending(self) -> int:
        return len(self.batch.records) + len(self.batch.states)

    def take(self) -> pgstore.Batch:
        batch, self.batch = self.batch, pgstore.Batch()
        batch.counters = dict(self.counters)
        return batch


DENIED = re.compile(r"Denied PUBLISH from (\S+)")
NOT_AUTHORISED = "disconnected, not authorised"


def scan_broker_log(line: str) -> tuple[str, str] | None:
    """A refusal in a Mosquitto log line: (counter, client id), or None."""
    match = DENIED.search(line)
    if match:
        return "acl_denied", match.group(1)
    if NOT_AUTHORISED in line:
        return "auth_refused", ""
    return None


class Central:
    def __init__(
        self,
        broker: Broker,
        dsn: str,
        *,
        instance: str = "",
        broker_log: Path | None = None,
        flush_s: float = FLUSH_S,
    ) -> None:
        self.broker = broker
        self.dsn = dsn
        self.instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self.broker_log = broker_log
        self.flush_s = flush_s
        self.ingest = Ingest()
        self.ready = asyncio.Event()  # subscribed and the database migrated
        self.committed = 0
        self._unwritten: pgstore.Batch | None = None
        self._acks: asyncio.Queue[Publish] = asyncio.Queue()
        self._unsent: list[Publish] = []  # taken from _acks, not confirmed when the connection went
        self._wake = asyncio.Event()
        self._last_counters: dict[str, int] = {}
        self.closed = False
        # Optional probe (tests, benchmarks): called with each batch once it has committed.
        self.on_commit: Callable[[pgstore.Batch], None] | None = None
        # Services run beside ingest and stopped with it (the web side: web.FloorWeb.run).
        self.services: list[Callable[[], Coroutine[Any, Any, None]]] = []
        # Floor-wide settings: each desk's policy published (retained) when it changes; their reports kept.
        self.policy = PolicyService(dsn, self._acks.put_nowait)
        self.ingest.on_settings = self.policy.report
        # Staged firmware rollouts: each tick's updates published (retained) to the desks they name.
        self.rollouts = RolloutService(dsn, self._publish_update)
        self.ingest.on_update_status = self.rollouts.report

    def _publish_update(self, where: str, body: dict[str, Any]) -> None:
        """RolloutService's publisher: ``where`` is "site/desk", ``body`` an update (checked here)."""
        site, desk = where.split("/", 1)
        payload = S.encode(body)
        S.decode(S.UPDATE, payload)  # never send a desk what its reader would refuse
        self._acks.put_nowait(Publish(S.topic(site, desk, S.UPDATE), payload, retain=True))

    async def run(self) -> None:
        conn = await self._connect_db()
        await conn.close()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._mqtt_loop())
            group.create_task(self._writer())
            group.create_task(self.policy.run())
            group.create_task(self.rollouts.run())
            if self.broker_log is not None:
                group.create_task(self._tail_broker_log(self.broker_log))
            for service in self.services:
                group.create_task(service())

    async def _connect_db(self) -> psycopg.AsyncConnection[Any]:
        backoff = 0.2
        while not self.closed:
            try:
                conn = await pgstore.connect(self.dsn)
                await pgstore.migrate(conn)
                return conn
            except psycopg.OperationalError as exc:
                log.warning("central: database unavailable (%s); retrying in %.1f s", _one_line(exc), backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, DB_BACKOFF_S)
        raise asyncio.CancelledError

    async def _mqtt_loop(self) -> None:
        backoff = 0.2
        while True:
            try:
                async with self.broker.client(f"central-{self.instance}", keepalive=15) as client:
                    share = f"$share/{S.SHARE_GROUP}/{S.PREFIX}"
                    await client.subscribe(f"{share}/+/+/{S.RECORDS}", qos=1)
                    await client.subscribe(f"{share}/+/+/{S.ALERTS}", qos=1)
                    for kind in (S.PRESENCE, S.INVENTORY, S.STATE, S.SETTINGS, S.UPDATE_STATUS):
                        await client.subscribe(f"{S.PREFIX}/+/+/{kind}", qos=1)
                    log.info("central %s: subscribed at %s:%d", self.instance, self.broker.host, self.broker.port)
                    self.ready.set()
                    backoff = 0.2
                    await together(self._receive(client), self._send_acks(client))
            except (aiomqtt.MqttError, OSError) as exc:
                log.warning("central: broker: %s; reconnecting in %.1f s", exc, backoff)
            if self.closed or cancelled():  # a cancel can surface from aiomqtt's exit as an MqttError
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            self.ingest.message(str(message.topic), payload if isinstance(payload, bytes) else str(payload).encode())
            if self.ingest.pending() >= FLUSH_AT:
                self._wake.set()

    async def _send_acks(self, client: aiomqtt.Client) -> None:
        """Central's messages (acks, policies, updates) in order. All those waiting go out together:
        paho sends them in the order given and each PUBACK is awaited beside the others', never one
        round trip after another (a rollout's wave is hundreds of updates at once). What a lost
        connection left unconfirmed is sent first in the next session."""
        while True:
            if not self._unsent:
                self._unsent.append(await self._acks.get())
            batch, self._unsent = self._unsent, []
            while not self._acks.empty():
                batch.append(self._acks.get_nowait())
            results = await asyncio.gather(
                *(client.publish(ack.topic, ack.payload, qos=ack.qos, retain=ack.retain) for ack in batch),
                return_exceptions=True,
            )
            failed = [(ack, result) for ack, result in zip(batch, results, strict=True) if result is not None]
            if failed:
                self._unsent = [ack for ack, _ in failed]
                raise failed[0][1]

    async def _writer(self) -> None:
        conn = await self._connect_db()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            self._wake.clear()
            batch = self.ingest.take()
            if self._unwritten is not None:
                self._unwritten.merge(batch)
                batch, self._unwritten = self._unwritten, None
            if not len(batch) and not batch.alerts and not self._counters_changed(batch):
                continue
            try:
                written = await self._write(conn, batch)
            except RETRIED as exc:
                log.info("central: write retried (%s)", _one_line(exc))  # another instance wrote the same rows
                self._unwritten = batch
                continue
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("central: database write failed (%s); keeping the batch", _one_line(exc))
                self._unwritten = batch
                with contextlib.suppress(Exception):
                    await conn.close()
                conn = await self._connect_db()
                continue
            self._last_counters = dict(batch.counters)
            if self.on_commit is not None:
                self.on_commit(batch)
            self.committed += written.records
            if written.refused_stores:
                self.ingest.refuse("refused_store", f"{written.refused_stores} records under another desk's store id")
            for ack in written.acks:
                body = {"store": ack.store, "upto": ack.upto}
                self._acks.put_nowait(Publish(S.topic(ack.site, ack.desk, S.ACK), S.encode(body), retain=True))

    async def _write(self, conn: psycopg.AsyncConnection[Any], batch: pgstore.Batch) -> pgstore.Written:
        try:
            return await pgstore.write(conn, batch, self.instance)
        except psycopg.Error:
            if self.closed:  # psycopg may answer a cancel with an error of its own: stop, never retry
                raise asyncio.CancelledError from None
            raise

    def _counters_changed(self, batch: pgstore.Batch) -> bool:
        return batch.counters != self._last_counters

    async def _tail_broker_log(self, path: Path) -> None:
        """Count the broker's refusals (ACL, authentication) as they are logged; starts at the end."""
        position = path.stat().st_size if path.exists() else 0
        while True:
            await asyncio.sleep(0.2)
            try:
                size = path.stat().st_size
                if size < position:
                    position = 0  # rotated
                if size == position:
                    continue
                with open(path, "rb") as handle:
                    handle.seek(position)
                    data = handle.read(size - position)
            except OSError:
                continue
            end = data.rfind(b"\n") + 1
            position += end
            for line in data[:end].decode(errors="replace").splitlines():
                found = scan_broker_log(line)
                if found is not None:
                    counter, client = found
                    who = f"client {client}" if client else "a client"
                    reason = "ACL" if counter == "acl_denied" else "authentication"
                    self.ingest.refuse(counter, f"{who} at the broker ({reason})")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


async def serve(central: Central, stop: asyncio.Event) -> int:
    running = asyncio.create_task(central.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    central.closed = True
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    stopping.cancel()
    return 0
