"""Central's PostgreSQL side: the schema, its versioned migrations, and one batched write.

Exactly once rests here, not on MQTT: a call record's key is (store id, call id); a desk's
SQLite store id is random per store, and the SIP Call-ID alone is not unique (a direct call
between two desks has one Call-ID on both). A record is upserted, replacing only an older
version of itself (lower outbox seq: a missed call answered after all), so a replay changes
nothing. Each store's cursor (``outbox_cursors.acked``) is advanced in the same transaction as
its records, and central acknowledges that value after the commit, never before.

Live state, inventory and presence are upserted guarded by the desk's (run, seq): several
central instances may write the same desk in any order and the newest always stays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from offhook.floor import schema as S

log = logging.getLogger("offhook.central")

# call_rollups' rows from the calls matching {where}: the same figures reports_pg.sql() takes from
# the calls themselves. A timing is whole ms as there (round(coalesce(x, 0) * 1000)); each handled
# call's is in <name>_ms as a big-endian int4, or in <name>_wide as a float8 when it does not fit one
# (no real call's does), in ascending order. ROLLUP_OUTCOMES are store.OUTCOMES, ROLLUP_HANDLED
# store.HANDLED_OUTCOMES.
ROLLUP_OUTCOMES = ("answered", "missed", "abandoned", "transferred", "escalated")
ROLLUP_HANDLED = ("answered", "transferred", "escalated")
TIMINGS = ("ring", "talk", "hold", "wrap")
# report.ANALYTICS_MEANS when the rollups were made (tests/floor/test_rollups.py compares them): each
# one's sum and count of values, in this order, follow the calls with figures in ``analytics``.
ROLLUP_ANALYTICS = (
    "agent_share",
    "overtalk_count",
    "overtalk_s",
    "dead_air_count",
    "dead_air_s",
    "response_median_s",
    "talking_while_muted_s",
    "quality.noise_floor_dbfs",
    "quality.clipping_pct",
    "quality.echo_reduction_db",
)
_FIGURE = "(c.analytics #>> '{{{}}}')::float8"
_INT4 = "abs({v}) < 2147483648"
ROLLUP_SELECT = (
    "SELECT local_day, store_id, site, desk, agent, "
    + ", ".join(f"count(*) FILTER (WHERE outcome = '{o}')" for o in ROLLUP_OUTCOMES)
    + ", count(*) FILTER (WHERE h), "
    + ", ".join(f"coalesce(sum({t}) FILTER (WHERE h), 0)" for t in TIMINGS)
    + ", coalesce(sum(holds) FILTER (WHERE h), 0), coalesce(sum(long_holds) FILTER (WHERE h), 0), "
    + ", ".join(
        f"string_agg(int4send({t}::int4), ''::bytea ORDER BY {t}) FILTER (WHERE h AND {_INT4.format(v=t)})"
        for t in TIMINGS
    )
    + ", "
    + ", ".join(
        f"string_agg(float8send({t}), ''::bytea ORDER BY {t}) FILTER (WHERE h AND NOT {_INT4.format(v=t)})"
        for t in TIMINGS
    )
    + ", ARRAY[count(*) FILTER (WHERE analytics IS NOT NULL)::float8, "
    + ", ".join(f"coalesce(sum(a{i}), 0), count(a{i})" for i in range(len(ROLLUP_ANALYTICS)))
    + "]"
    + " FROM (SELECT c.local_day, c.store_id, c.site, c.desk, c.agent, c.outcome, c.holds, c.long_holds,"
    + " c.analytics, "
    + ", ".join(f"{_FIGURE.format(name.replace('.', ','))} AS a{i}" for i, name in enumerate(ROLLUP_ANALYTICS))
    + ","
    + " c.outcome IN ("
    + ", ".join(f"'{o}'" for o in ROLLUP_HANDLED)
    + ") AS h, "
    + ", ".join(f"round(coalesce(c.{t}_s, 0) * 1000) AS {t}" for t in TIMINGS)
    + " FROM calls c WHERE {where}) c GROUP BY local_day, store_id, site, desk, agent"
)
# version -> SQL. Add, never edit: a database migrates forward at central's start.
MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE desks (
    site        text NOT NULL,
    desk        text NOT NULL,
    team        text NOT NULL DEFAULT '',
    online      boolean NOT NULL DEFAULT false,
    run         bigint NOT NULL DEFAULT 0,
    seq         bigint NOT NULL DEFAULT 0,
    presence_ts double precision,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, desk)
);
CREATE TABLE live_state (
    site        text NOT NULL,
    desk        text NOT NULL,
    team        text NOT NULL DEFAULT '',
    run         bigint NOT NULL,
    seq         bigint NOT NULL,
    status      text NOT NULL,
    agent       text NOT NULL,
    call        text NOT NULL,
    calls       integer NOT NULL,
    since       double precision NOT NULL,
    hold_since  double precision,
    ts          double precision NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, desk)
);
CREATE TABLE inventory (
    site        text NOT NULL,
    desk        text NOT NULL,
    run         bigint NOT NULL,
    seq         bigint NOT NULL,
    serial      text NOT NULL,
    board       text NOT NULL,
    firmware    text NOT NULL,
    slot        text NOT NULL,
    health      text NOT NULL,
    transport   text NOT NULL,
    connected   boolean NOT NULL,
    ts          double precision NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, desk)
);
CREATE TABLE outbox_cursors (
    store_id    text PRIMARY KEY,
    site        text NOT NULL,
    desk        text NOT NULL,
    acked       bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE calls (
    store_id    text NOT NULL,
    call_id     text NOT NULL,
    seq         bigint NOT NULL,
    site        text NOT NULL,
    desk        text NOT NULL,
    agent       text NOT NULL,
    tz          text NOT NULL,
    direction   text NOT NULL,
    number      text,
    outcome     text NOT NULL,
    ring_wall   double precision NOT NULL,
    answer_wall double precision,
    end_wall    double precision,
    wrap_wall   double precision,
    local_start text NOT NULL,
    local_day   date NOT NULL,
    ring_s      double precision,
    talk_s      double precision,
    hold_s      double precision,
    wrap_s      double precision,
    holds       integer NOT NULL,
    long_holds  integer NOT NULL,
    ended_by    text,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (store_id, call_id)
);
CREATE INDEX calls_day ON calls (local_day, site, desk);
CREATE TABLE alerts (
    site        text NOT NULL,
    desk        text NOT NULL,
    run         bigint NOT NULL,
    seq         bigint NOT NULL,
    kind        text NOT NULL,
    call_id     text,
    ts          double precision NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, desk, run, seq)
);
CREATE TABLE counters (
    instance    text NOT NULL,
    name        text NOT NULL,
    value       bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance, name)
);
""",
    # Central's web side (floor/auth.py): role tokens, stored as SHA-256 only, and the pages' sessions.
    2: """
CREATE TABLE api_tokens (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL,
    role         text NOT NULL CHECK (role IN ('supervisor', 'it')),
    digest       bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE TABLE web_sessions (
    digest      bytea PRIMARY KEY,
    token_id    bigint NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX web_sessions_token ON web_sessions (token_id);
""",
    # calls partitioned by month of local_day (a call's day never changes, so (store, call, day) is
    # still one key per call); write() makes each month's partition before its first record.
    3: """
ALTER TABLE calls RENAME TO calls_v2;
ALTER TABLE calls_v2 RENAME CONSTRAINT calls_pkey TO calls_v2_pkey;
ALTER INDEX calls_day RENAME TO calls_v2_day;
CREATE TABLE calls (LIKE calls_v2 INCLUDING DEFAULTS, PRIMARY KEY (store_id, call_id, local_day))
    PARTITION BY RANGE (local_day);
CREATE INDEX calls_day ON calls (local_day, site, desk);
CREATE TABLE calls_default PARTITION OF calls DEFAULT;
DO $$
DECLARE month date;
BEGIN
    FOR month IN SELECT DISTINCT date_trunc('month', local_day)::date FROM calls_v2 LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF calls FOR VALUES FROM (%L) TO (%L)',
            'calls_' || to_char(month, 'YYYY_MM'), month, (month + interval '1 month')::date);
    END LOOP;
END $$;
INSERT INTO calls SELECT * FROM calls_v2;
DO $$
DECLARE month date;
BEGIN
    FOR month IN SELECT generate_series(date_trunc('month', current_date), date_trunc('month', current_date)
            + interval '2 months', interval '1 month')::date LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF calls FOR VALUES FROM (%L) TO (%L)',
            'calls_' || to_char(month, 'YYYY_MM'), month, (month + interval '1 month')::date);
    END LOOP;
END $$;
DROP TABLE calls_v2;
""",
    # Floor-wide settings (floor/policy.py): each layer's values and locks, one version for every
    # change, and what each desk reports in effect.
    4: """
CREATE TABLE settings (
    layer       text NOT NULL CHECK (layer IN ('desk', 'team', 'site', 'board')),
    target      text NOT NULL,
    key         text NOT NULL,
    value       jsonb NOT NULL,
    locked      boolean NOT NULL DEFAULT false,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (layer, target, key)
);
CREATE TABLE settings_version (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    version     bigint NOT NULL
);
INSERT INTO settings_version (version) VALUES (0);
CREATE TABLE desk_settings (
    site        text NOT NULL,
    desk        text NOT NULL,
    version     bigint NOT NULL,
    report      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, desk)
);
""",
    # Firmware rollouts (floor/rollouts.py): bundles by sha256, each rollout's planner state as
    # JSON, each desk's last reported phase, and teams pinned to a version.
    5: """
CREATE TABLE bundles (
    sha256      text PRIMARY KEY,
    version     text NOT NULL,
    board       text NOT NULL,
    data        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rollouts (
    name        text PRIMARY KEY,
    sha256      text NOT NULL REFERENCES bundles,
    state       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE rollout_units (
    rollout     text NOT NULL REFERENCES rollouts ON DELETE CASCADE,
    desk        text NOT NULL,
    phase       text NOT NULL,
    percent     integer NOT NULL DEFAULT 0,
    reason      text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollout, desk)
);
CREATE TABLE team_pins (
    team        text PRIMARY KEY,
    version     text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
""",
    # A call's conversation analytics (issue 25; docs/analytics.md) as the desk sent them, checked
    # by schema.py: an object of figures, "quality" one level down; NULL when no pipeline metered
    # the call (a desk before metrics store version 4 never sends any). Reports read it with ->>.
    6: """
ALTER TABLE calls ADD COLUMN analytics jsonb;
""",
    # Reports' rollups (floor/reports_pg.py): one row per store, day and agent, rebuilt from that
    # store-day's calls in the transaction that changes any of them (write()), so it always equals
    # the calls it sums; the timings of handled calls are kept whole for exact medians and p90s.
    7: """
CREATE TABLE call_rollups (
    local_day   date NOT NULL,
    store_id    text NOT NULL,
    site        text NOT NULL,
    desk        text NOT NULL,
    agent       text NOT NULL,
    answered    integer NOT NULL,
    missed      integer NOT NULL,
    abandoned   integer NOT NULL,
    transferred integer NOT NULL,
    escalated   integer NOT NULL,
    handled     integer NOT NULL,
    ring_sum    double precision NOT NULL,
    talk_sum    double precision NOT NULL,
    hold_sum    double precision NOT NULL,
    wrap_sum    double precision NOT NULL,
    holds       bigint NOT NULL,
    long_holds  bigint NOT NULL,
    ring_ms     bytea,
    talk_ms     bytea,
    hold_ms     bytea,
    wrap_ms     bytea,
    ring_wide   bytea,
    talk_wide   bytea,
    hold_wide   bytea,
    wrap_wide   bytea,
    analytics   double precision[] NOT NULL,
    PRIMARY KEY (local_day, store_id, site, desk, agent)
);
CREATE INDEX call_rollups_store ON call_rollups (store_id, local_day);
"""
    + f"INSERT INTO call_rollups {ROLLUP_SELECT.replace('{where}', 'true')};",
}
SCHEMA_VERSION = max(MIGRATIONS)

_KEYS = ("seq", "call_id")
CALL_COLUMNS = (
    "store_id",
    "call_id",
    "seq",
    "site",
    "desk",
    *[k for k in S.RECORD_FIELDS if k not in ("seq", "call_id")],
    "analytics",  # optional on the wire (schema.py): absent is NULL
)


class SchemaTooNew(RuntimeError):
    pass


@dataclass
class Batch:
    """What central writes in one transaction; ``take`` from central's Ingest fills it."""

    records: dict[tuple[str, str], tuple[str, str, dict[str, Any]]] = field(default_factory=dict)  # key: site, desk, r
    batches: list[tuple[str, str, str, int]] = field(default_factory=list)  # site, desk, store, upto
    states: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    inventory: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    presence: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    alerts: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records) + len(self.batches) + len(self.states) + len(self.inventory) + len(self.presence)

    def merge(self, newer: Batch) -> None:
        """Fold a later batch into this unwritten one (PostgreSQL was away): newest state wins."""
        for key, (site, desk, record) in newer.records.items():
            old = self.records.get(key)
            if old is None or old[2]["seq"] < record["seq"]:
                self.records[key] = (site, desk, record)
        self.batches += newer.batches
        for mine, theirs in ((self.states, newer.states), (self.inventory, newer.inventory)):
            for key, body in theirs.items():
                if key not in mine or _order(mine[key]) < _order(body):
                    mine[key] = body
        for key, body in newer.presence.items():
            if key not in self.presence or _order(self.presence[key]) < _order(body):
                self.presence[key] = body
        self.alerts += newer.alerts
        self.counters = newer.counters


def _jsonb(figures: dict[str, Any] | None) -> Jsonb | None:
    """A call's analytics for the jsonb column: SQL NULL (not JSON null) when there are none."""
    return None if figures is None else Jsonb(figures)


def _order(body: dict[str, Any]) -> tuple[int, int]:
    return int(body["run"]), int(body["seq"])


@dataclass(frozen=True)
class Ack:
    site: str
    desk: str
    store: str
    upto: int


@dataclass
class Written:
    acks: list[Ack]
    refused_stores: int  # records whose store id belongs to another desk (counted, dropped)
    records: int


async def connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(dsn, autocommit=False, connect_timeout=5)


async def migrate(conn: psycopg.AsyncConnection[Any]) -> int:
    """Apply the missing migrations in one transaction; several instances starting at once serialise
    on an advisory lock. Returns the version now in place."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(4242020)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = await (await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")).fetchone()
        current = int(row[0]) if row else 0
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(f"database schema version {current}; this central knows up to {SCHEMA_VERSION}")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            await conn.execute(MIGRATIONS[version])
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            log.info("central: database migrated to schema version %d", version)
    return SCHEMA_VERSION


_STATE_UPSERT = """
INSERT INTO live_state (site, desk, team, run, seq, status, agent, call, calls, since, hold_since, ts, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (site, desk) DO UPDATE SET team = EXCLUDED.team, run = EXCLUDED.run, seq = EXCLUDED.seq,
    status = EXCLUDED.status, agent = EXCLUDED.agent, call = EXCLUDED.call, calls = EXCLUDED.calls,
    since = EXCLUDED.since, hold_since = EXCLUDED.hold_since, ts = EXCLUDED.ts, updated_at = now()
WHERE (live_state.run, live_state.seq) < (EXCLUDED.run, EXCLUDED.seq)
"""
_INVENTORY_UPSERT = """
INSERT INTO inventory
    (site, desk, run, seq, serial, board, firmware, slot, health, transport, connected, ts, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (site, desk) DO UPDATE SET run = EXCLUDED.run, seq = EXCLUDED.seq, serial = EXCLUDED.serial,
    board = EXCLUDED.board, firmware = EXCLUDED.firmware, slot = EXCLUDED.slot, health = EXCLUDED.health,
    transport = EXCLUDED.transport, connected = EXCLUDED.connected, ts = EXCLUDED.ts, updated_at = now()
WHERE (inventory.run, inventory.seq) < (EXCLUDED.run, EXCLUDED.seq)
"""
_PRESENCE_UPSERT = """
INSERT INTO desks (site, desk, team, online, run, seq, presence_ts, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (site, desk) DO UPDATE SET team = EXCLUDED.team, online = EXCLUDED.online, run = EXCLUDED.run,
    seq = EXCLUDED.seq, presence_ts = EXCLUDED.presence_ts, updated_at = now()
WHERE (desks.run, desks.seq) < (EXCLUDED.run, EXCLUDED.seq)
"""
_INCOMING = """
CREATE TEMP TABLE IF NOT EXISTS incoming_calls (LIKE calls INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
"""
_CALLS_UPSERT = f"""
INSERT INTO calls ({", ".join(CALL_COLUMNS)})
SELECT {", ".join(CALL_COLUMNS)} FROM incoming_calls
ON CONFLICT (store_id, call_id, local_day) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in CALL_COLUMNS[2:])},
    committed_at = now()
WHERE calls.seq < EXCLUDED.seq
RETURNING store_id, site, desk, local_day
"""
# The rollups of the store-days whose calls changed, rebuilt whole from those calls: a replay changes
# no call (the upsert returns none), a newer version or a late record rebuilds its own day.
_ROLLUPS_DELETE = """
DELETE FROM call_rollups r USING unnest(%s::text[], %s::date[]) AS t(store_id, local_day)
WHERE r.store_id = t.store_id AND r.local_day = t.local_day
"""
_ROLLUPS_INSERT = "INSERT INTO call_rollups " + ROLLUP_SELECT.replace(
    "{where}",
    "(c.store_id, c.site, c.desk, c.local_day) IN"
    " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::date[]))",
)


_PARTITIONS: set[tuple[str, int, str, str]] = set()  # (host, port, database, partition) seen to exist
PARTITION_LOCK_TIMEOUT = "1s"  # never hold ingest up behind a long report: the month is made next time


def partition_of(day: str) -> tuple[str, str, str]:
    """The partition of a local day ('2026-03-10'): its name, first day and the next month's first day."""
    year, month = int(day[:4]), int(day[5:7])
    after = f"{year + month // 12:04d}-{month % 12 + 1:02d}-01"
    return f"calls_{year:04d}_{month:02d}", f"{year:04d}-{month:02d}-01", after


async def ensure_partitions(conn: psycopg.AsyncConnection[Any], days: set[str]) -> None:
    """Make the month partitions these days need, each in a short transaction of its own, before the
    batch's. A month that cannot be made now (a lock held past the timeout, or rows of it already in
    the default partition) stays in calls_default: its rows are right, only not pruned."""
    for name, first, after in sorted({partition_of(str(day)) for day in days}):
        key = (conn.info.host, conn.info.port, conn.info.dbname, name)
        if key in _PARTITIONS:
            continue
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'")
                await conn.execute("SELECT pg_advisory_xact_lock(4242021)")  # instances one at a time
                found = await (await conn.execute("SELECT to_regclass(%s)", (name,))).fetchone()
                early = await (
                    await conn.execute(
                        "SELECT 1 FROM calls_default WHERE local_day >= %s AND local_day < %s LIMIT 1", (first, after)
                    )
                ).fetchone()
                if (found is None or found[0] is None) and early is None:
                    # name and bounds come from partition_of: digits only
                    await conn.execute(
                        f"CREATE TABLE {name} PARTITION OF calls FOR VALUES FROM ('{first}') TO ('{after}')"
                    )
        except psycopg.errors.LockNotAvailable:
            log.info("central: partition %s not made yet (busy); its rows go to calls_default meanwhile", name)
            continue
        _PARTITIONS.add(key)


async def refresh_rollups(cur: psycopg.AsyncCursor[Any], changed: list[tuple[Any, ...]]) -> None:
    """Rebuild the rollups of these (store, site, desk, day)s from their calls, in the caller's
    transaction (the calls' own): a call is in its day's rollup exactly once, as it is in calls."""
    days = sorted({(str(store), str(site), str(desk), day) for store, site, desk, day in changed})
    if not days:
        return
    stores, sites, desks, dates = (list(column) for column in zip(*days, strict=True))
    await cur.execute(_ROLLUPS_DELETE, (stores, dates))
    await cur.execute(_ROLLUPS_INSERT, (stores, sites, desks, dates))


def rebuild_rollups(conn: psycopg.Connection[Any]) -> None:
    """Every rollup again from the calls (for calls written by other means than write(), as the
    benchmark's SQL fill); the caller commits."""
    conn.execute("DELETE FROM call_rollups")
    conn.execute("INSERT INTO call_rollups " + ROLLUP_SELECT.replace("{where}", "true"))


async def write(conn: psycopg.AsyncConnection[Any], batch: Batch, instance: str) -> Written:
    """Write one batch in one transaction; the acks to publish once it has committed."""
    refused = 0
    acks: list[Ack] = []
    await ensure_partitions(conn, {str(r["local_day"]) for _, _, r in batch.records.values()})
    async with conn.transaction():
        owners: dict[str, tuple[str, str]] = {}
        stores = sorted({(store, site, desk) for site, desk, store, _ in batch.batches})
        if stores:
            async with conn.cursor() as cur:
                # First sight of a store binds it to its desk; locked in key order (no deadlock between instances).
                await cur.executemany(
                    "INSERT INTO outbox_cursors (store_id, site, desk) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    stores,
                )
                await cur.execute(
                    "SELECT store_id, site, desk FROM outbox_cursors WHERE store_id = ANY(%s) ORDER BY store_id"
                    " FOR UPDATE",
                    ([s for s, _, _ in stores],),
                )
                owners = {store: (site, desk) for store, site, desk in await cur.fetchall()}
        rows = []
        for (store, _), (site, desk, record) in sorted(batch.records.items()):
            if owners.get(store) != (site, desk):
                refused += 1  # another desk's store id: a desk may only write its own records
                continue
            figures = record.get("analytics")
            values = [record[c] for c in CALL_COLUMNS[5:-1]]
            rows.append((store, record["call_id"], record["seq"], site, desk, *values, _jsonb(figures)))
        if rows:
            await conn.execute(_INCOMING)
            async with conn.cursor() as cur:
                async with cur.copy(f"COPY incoming_calls ({', '.join(CALL_COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        await copy.write_row(row)
                await cur.execute(_CALLS_UPSERT)
                await refresh_rollups(cur, await cur.fetchall())
        uptos: dict[str, int] = {}
        for site, desk, store, upto in batch.batches:
            if owners.get(store) == (site, desk):
                uptos[store] = max(uptos.get(store, 0), upto)
        async with conn.cursor() as cur:
            if uptos:
                await cur.execute(
                    "UPDATE outbox_cursors c SET acked = greatest(c.acked, u.upto), updated_at = now()"
                    " FROM unnest(%s::text[], %s::bigint[]) AS u(store_id, upto) WHERE c.store_id = u.store_id"
                    " RETURNING c.store_id, c.site, c.desk, c.acked",
                    (list(uptos), list(uptos.values())),
                )
                acks = [Ack(site, desk, store, int(acked)) for store, site, desk, acked in await cur.fetchall()]
            if batch.states:
                await cur.executemany(
                    _STATE_UPSERT,
                    [
                        (
                            site,
                            desk,
                            b.get("team", ""),
                            b["run"],
                            b["seq"],
                            b["status"],
                            b["agent"],
                            b["call"],
                            b["calls"],
                            b["since"],
                            b["hold_since"],
                            b["ts"],
                        )
                        for (site, desk), b in sorted(batch.states.items())
                    ],
                )
            if batch.inventory:
                await cur.executemany(
                    _INVENTORY_UPSERT,
                    [
                        (
                            site,
                            desk,
                            b["run"],
                            b["seq"],
                            b["serial"],
                            b["board"],
                            b["firmware"],
                            b["slot"],
                            b["health"],
                            b["transport"],
                            b["connected"],
                            b["ts"],
                        )
                        for (site, desk), b in sorted(batch.inventory.items())
                    ],
                )
            if batch.presence:
                await cur.executemany(
                    _PRESENCE_UPSERT,
                    [
                        (site, desk, str(b.get("team", "")), b["online"], b["run"], b["seq"], b["ts"])
                        for (site, desk), b in sorted(batch.presence.items())
                    ],
                )
            if batch.alerts:
                await cur.executemany(
                    "INSERT INTO alerts (site, desk, run, seq, kind, call_id, ts) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    [(site, desk, b["run"], b["seq"], b["kind"], b["call"], b["ts"]) for site, desk, b in batch.alerts],
                )
            if batch.counters:
                await cur.executemany(
                    "INSERT INTO counters (instance, name, value) VALUES (%s, %s, %s) ON CONFLICT (instance, name)"
                    " DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                    [(instance, name, value) for name, value in sorted(batch.counters.items())],
                )
    return Written(acks, refused, len(rows))
