"""The metrics store: one SQLite file (WAL, synchronous=FULL) holding every call.

Why this shape:

- Every recorder method is one short transaction. With WAL and ``synchronous=FULL``
  a transaction that returned is on disk, so a kill -9 (or power cut) at any moment
  loses no completed call; SQLite's journal guarantees no half-written row.
- A call is persisted as it goes (ring, answer, each hold, hang-up, wrap-up end), keyed
  by its SIP Call-ID (``UNIQUE``). Every event is idempotent: replaying it after a
  daemon restart changes nothing, so a restarted daemon resumes a call in progress
  by its Call-ID and never duplicates it.
- Durations come from the monotonic readings the caller passes (``mono``), so a wall
  clock step (NTP, DST, the agent changing the time) during a call changes no figure.
  Dates come from the wall-clock reading (``wall``) and the agent's IANA time zone,
  stored per call: a day is the agent's local date at ring start.
- A call is *completed* when nothing more can change it: after the wrap-up end of a
  handled call, or when a ringing call was missed or abandoned. Reports count
  completed calls only; the derived durations are stored then, so a report over a
  million calls reads numbers instead of replaying events.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs

from offhook.metrics import privacy

SCHEMA_VERSION = 4
READABLE_FROM = 1  # reports and exports read every column they need from version 1 on
DB_NAME = "metrics.sqlite3"
DATA_DIR_ENV = "OFFHOOK_DATA_DIR"
LONG_HOLD_S = 120.0  # contact-centre care rules: check on a held customer within 2 minutes

DIRECTIONS = ("inbound", "outbound")
OUTCOMES = ("answered", "missed", "abandoned", "transferred", "escalated")
HANDLED_OUTCOMES = ("answered", "transferred", "escalated")

_SCHEMA_V1 = """
CREATE TABLE calls (
    id          INTEGER PRIMARY KEY,
    call_id     TEXT NOT NULL UNIQUE,          -- the SIP Call-ID
    agent       TEXT NOT NULL,
    tz          TEXT NOT NULL,                 -- the agent's IANA time zone at ring start
    direction   TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    number      TEXT,                          -- customer number: keyed hash by default, see privacy.py
    ring_wall   REAL NOT NULL,                 -- epoch seconds (UTC) at ring start
    local_start TEXT NOT NULL,                 -- ring start in the agent's zone, ISO 8601 with offset
    local_day   TEXT NOT NULL,                 -- YYYY-MM-DD, the agent's local date at ring start
    ring_mono   REAL NOT NULL,
    answer_mono REAL,
    answer_wall REAL,
    end_mono    REAL,                          -- hang-up, or the end of ringing for a missed/abandoned call
    end_wall    REAL,
    wrap_mono   REAL,                          -- wrap-up end
    wrap_wall   REAL,
    outcome     TEXT CHECK (outcome IN ('answered', 'missed', 'abandoned', 'transferred', 'escalated')),
    completed   INTEGER NOT NULL DEFAULT 0,
    ring_s      REAL,                          -- derived when completed, from monotonic readings
    talk_s      REAL,                          -- answer to hang-up, holds excluded
    hold_s      REAL,
    wrap_s      REAL,
    holds       INTEGER NOT NULL DEFAULT 0,
    long_holds  INTEGER NOT NULL DEFAULT 0,    -- holds longer than LONG_HOLD_S
    summary     TEXT                           -- SUMMARY_FIELDS as comma-separated integers, see below
);
CREATE INDEX calls_day ON calls (local_day, agent) WHERE completed = 1;
CREATE INDEX calls_open ON calls (completed) WHERE completed = 0;
CREATE INDEX calls_ring_wall ON calls (ring_wall);
CREATE TABLE holds (
    call        INTEGER NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    start_mono  REAL NOT NULL,
    start_wall  REAL NOT NULL,
    end_mono    REAL,
    end_wall    REAL,
    PRIMARY KEY (call, seq)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""

# A completed call's figures once more as one fixed-layout text field: a report reads a
# million calls as one group_concat() string per group and parses it with numpy in C,
# about four times faster than fetching a million Python tuples.
# outcome: index in OUTCOMES; durations in whole ms; local_hour and utc_offset_min at ring start.
SUMMARY_FIELDS = (
    "outcome",
    "ring_ms",
    "talk_ms",
    "hold_ms",
    "wrap_ms",
    "holds",
    "long_holds",
    "local_hour",
    "utc_offset_min",
)

# Version 2: why a call ended when the daemon did not see it end ("restart": completed by the
# next daemon run, at the last moment the old run was known alive). NULL: seen to the end.
_SCHEMA_V2 = "ALTER TABLE calls ADD COLUMN ended_by TEXT"

# Version 3: the floor's outbox (offhook.floor). A completed call gets the next outbox sequence number
# (floor_seq) when the floor client first reads it; floor_summary is the summary it was sent with, so
# a missed call answered after all (reopened, completed again) is numbered and sent again. The cursor
# (meta 'floor_acked': the highest floor_seq central has committed) exists only once a floor is set up.
_SCHEMA_V3 = """
ALTER TABLE calls ADD COLUMN floor_seq INTEGER;
ALTER TABLE calls ADD COLUMN floor_summary TEXT;
CREATE INDEX calls_floor_seq ON calls (floor_seq) WHERE floor_seq IS NOT NULL;
CREATE INDEX calls_floor_due ON calls (id) WHERE completed = 1 AND floor_summary IS NOT summary
"""

# Version 4: the conversation analytics the audio pipeline returned at hang-up (CallFigures.as_dict()
# without its per-event lists, as JSON; docs/analytics.md). NULL when no pipeline metered the call:
# older rows, a pipeline not running: a missing figure is never a zero. Reports read it with
# json_extract(), whose NULLs avg() skips.
_SCHEMA_V4 = "ALTER TABLE calls ADD COLUMN analytics TEXT"

# version -> the SQL that takes a store from version-1 to version. Add, never edit.
MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3, 4: _SCHEMA_V4}
FLOOR_RECORD_COLUMNS = (
    "floor_seq",
    "call_id",
    "agent",
    "tz",
    "direction",
    "number",
    "outcome",
    "ring_wall",
    "answer_wall",
    "end_wall",
    "wrap_wall",
    "local_start",
    "local_day",
    "ring_s",
    "talk_s",
    "hold_s",
    "wrap_s",
    "holds",
    "long_holds",
    "ended_by",
    "analytics",
)
# The figures a call's analytics keep (CallFigures.as_dict() keys; quality is a nested object).
ANALYTICS_FIELDS = (
    "connected_s",
    "hold_s",
    "agent_talk_s",
    "customer_talk_s",
    "agent_share",
    "customer_share",
    "talking_while_muted_s",
    "overtalk_count",
    "overtalk_s",
    "overtalk_started_by_agent",
    "overtalk_started_by_customer",
    "dead_air_count",
    "dead_air_s",
    "dead_air_longest_s",
    "response_count",
    "response_median_s",
    "agent_longest_monologue_s",
    "customer_longest_monologue_s",
    "holds",
    "missed_checkins",
    "longest_hold_s",
)
QUALITY_FIELDS = ("noise_floor_dbfs", "clipping_pct", "echo_reduction_db", "agent_level_dbfs", "customer_level_dbfs")
ENDED_BY_RESTART = "restart"


class MetricsError(Exception):
    """A store that cannot be used (missing, not ours, newer schema) or a bad event."""


def default_data_dir() -> Path:
    """``$OFFHOOK_DATA_DIR`` if set (tests, several agents on one PC), else the user data dir."""
    override = os.environ.get(DATA_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_data_dir("offhook"))


def default_db_path() -> Path:
    return default_data_dir() / DB_NAME


def to_epoch(wall: datetime | float) -> float:
    """Epoch seconds from an aware datetime or a number; naive datetimes are refused (which zone?)."""
    if isinstance(wall, datetime):
        if wall.tzinfo is None or wall.utcoffset() is None:
            raise MetricsError("wall-clock times must be timezone-aware (e.g. datetime.now(UTC))")
        return wall.timestamp()
    if isinstance(wall, bool) or not isinstance(wall, int | float):
        raise MetricsError(f"wall-clock time must be a datetime or epoch seconds, not {type(wall).__name__}")
    return float(wall)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MetricsError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from None


def connect(path: Path, *, create: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """Open a store (or export) file, creating or migrating it when ``create`` is set."""
    if not create and not path.is_file():
        raise MetricsError(f"no metrics database at {path}")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    uri = f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rwc'}"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False, timeout=10.0)
        conn.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")  # purged personal data is overwritten, not left in free pages
        version = _schema_version(conn)
    except sqlite3.DatabaseError as exc:
        raise MetricsError(f"{path} is not a usable metrics database: {exc}") from None
    if version > SCHEMA_VERSION:
        conn.close()
        raise MetricsError(f"{path} has schema version {version}; this offhook knows up to {SCHEMA_VERSION}")
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        conn.close()  # someone else's database: never add our tables to it
        raise MetricsError(f"{path} is not an offhook metrics database")
    if version < SCHEMA_VERSION and not (readonly and version >= READABLE_FROM):
        if not create:
            conn.close()
            if version == 0:
                raise MetricsError(f"{path} is not an offhook metrics database")
            raise MetricsError(f"{path} has an old schema (version {version}); open it with the daemon to migrate")
        _migrate(conn, version)
    return conn


def _schema_version(conn: sqlite3.Connection) -> int:
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
    if not has_table:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def _migrate(conn: sqlite3.Connection, current: int) -> None:
    """Apply every missing migration in one transaction (all or nothing), recording each in schema_version."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        current = _schema_version(conn)  # another process may have migrated meanwhile
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                (version, datetime.now(UTC).isoformat(timespec="seconds")),
            )
        # Which store the calls come from: a report refuses to count a store and its own export twice.
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)", (uuid.uuid4().hex,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def summary(
    outcome: str,
    local_start: str,
    ring_s: float,
    talk_s: float = 0.0,
    hold_s: float = 0.0,
    wrap_s: float = 0.0,
    holds: int = 0,
    long_holds: int = 0,
) -> str:
    """The SUMMARY_FIELDS text of a completed call."""
    start = datetime.fromisoformat(local_start)
    offset = start.utcoffset()
    offset_min = 0 if offset is None else int(offset.total_seconds() // 60)
    durations = ",".join(str(round(s * 1000)) for s in (ring_s, talk_s, hold_s, wrap_s))
    return f"{OUTCOMES.index(outcome)},{durations},{holds},{long_holds},{start.hour},{offset_min}"


def analytics_json(figures: dict[str, Any]) -> str:
    """The stored form of a call's figures: the known fields only, each a finite number or None."""
    if not isinstance(figures, dict):
        raise MetricsError("analytics must be an object of figures")

    def pick(source: Any, names: tuple[str, ...]) -> dict[str, float | int | None]:
        source = source if isinstance(source, dict) else {}
        kept: dict[str, float | int | None] = {}
        for name in names:
            value = source.get(name)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            kept[name] = value if ok else None
        return kept

    kept: dict[str, Any] = pick(figures, ANALYTICS_FIELDS)
    if kept["connected_s"] is None:
        raise MetricsError("analytics without connected_s are not a call's figures")
    kept["quality"] = pick(figures.get("quality"), QUALITY_FIELDS)
    return json.dumps(kept, separators=(",", ":"))


def store_id(conn: sqlite3.Connection) -> str | None:
    """The random id a store got at creation (exports carry their store's id)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
    return None if row is None else str(row[0])


def meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(key): str(value) for key, value in conn.execute("SELECT key, value FROM meta")}


@dataclass(frozen=True)
class OpenCall:
    """A call in progress, as a restarted daemon finds it."""

    call_id: str
    agent: str
    direction: str
    answered: bool
    on_hold: bool
    hung_up: bool
    outcome: str | None


class CallRecorder:
    """The daemon's write side: one method per call moment, each durable when it returns.

    Every method takes the SIP Call-ID and explicit clock readings: ``wall`` (an aware
    datetime or epoch seconds) for dates and ``mono`` (``time.monotonic()``, seconds)
    for durations. Each is idempotent: an event already recorded, or one arriving
    after the call completed, is ignored and the method returns False. Thread-safe
    (one lock, one connection); each call costs one fsync, a few milliseconds, so the
    daemon may call it directly or through ``asyncio.to_thread``.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        numbers: str = privacy.DEFAULT_NUMBERS,
        salt_path: Path | None = None,
    ) -> None:
        self.path = path or default_db_path()
        self.conn = connect(self.path, create=True)
        self.conn.row_factory = sqlite3.Row
        self.numbers = privacy.NumberPolicy(numbers, salt_path or self.path.parent / privacy.SALT_NAME)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> CallRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ events

    def ringing(
        self,
        call_id: str,
        *,
        agent: str,
        direction: str,
        number: str | None,
        tz: str,
        wall: datetime | float,
        mono: float,
    ) -> bool:
        """The call starts ringing (inbound) or the agent dialled (outbound). False if already known."""
        if not call_id:
            raise MetricsError("a call needs its SIP Call-ID")
        if direction not in DIRECTIONS:
            raise MetricsError(f"direction must be inbound or outbound, not {direction!r}")
        epoch = to_epoch(wall)
        local = datetime.fromtimestamp(epoch, zone(tz))
        stored_number = self.numbers.store(number)
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO calls (call_id, agent, tz, direction, number, ring_wall, local_start, local_day,"
                " ring_mono) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING",
                (
                    call_id,
                    agent,
                    tz,
                    direction,
                    stored_number,
                    epoch,
                    local.isoformat(timespec="seconds"),
                    local.date().isoformat(),
                    float(mono),
                ),
            )
            return cursor.rowcount == 1

    def answered(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        """The agent answered (inbound) or the customer answered (outbound).

        A call marked missed (ring-no-answer) keeps ringing in the softphone; if the agent
        answers it after all, it is handled after all: it reopens, with the whole ring time.
        """
        with self._transaction() as conn:
            row = self._open(conn, call_id)
            if row is None:
                row = conn.execute(
                    "SELECT id, ring_mono FROM calls WHERE call_id = ? AND outcome = 'missed' AND answer_mono IS NULL",
                    (call_id,),
                ).fetchone()
            elif row["answer_mono"] is not None or row["end_mono"] is not None:
                return False
            if row is None:
                return False
            conn.execute(
                "UPDATE calls SET answer_mono = ?, answer_wall = ?, outcome = 'answered', completed = 0,"
                " end_mono = NULL, end_wall = NULL, ring_s = NULL, summary = NULL WHERE id = ?",
                (max(float(mono), row["ring_mono"]), to_epoch(wall), row["id"]),
            )
            return True

    def hold_started(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        with self._transaction() as conn:
            row = self._open(conn, call_id)
            if row is None or row["answer_mono"] is None or row["end_mono"] is not None:
                return False
            last = conn.execute(
                "SELECT seq, end_mono FROM holds WHERE call = ? ORDER BY seq DESC LIMIT 1", (row["id"],)
            ).fetchone()
            if last is not None and last["end_mono"] is None:
                return False  # already on hold
            replayed = conn.execute("SELECT 1 FROM holds WHERE call = ? AND start_mono = ?", (row["id"], float(mono)))
            if replayed.fetchone():
                return False  # this very hold was recorded before (same monotonic reading)
            conn.execute(
                "INSERT INTO holds (call, seq, start_mono, start_wall) VALUES (?, ?, ?, ?)",
                (row["id"], 1 if last is None else last["seq"] + 1, float(mono), to_epoch(wall)),
            )
            return True

    def hold_ended(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        with self._transaction() as conn:
            row = self._open(conn, call_id)
            return row is not None and self._end_hold(conn, row["id"], float(mono), to_epoch(wall))

    def transferred(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        """The agent transferred the answered call elsewhere (it still counts as handled)."""
        return self._mark(call_id, "transferred")

    def escalated(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        """The call went to the supervisor (escalate button answered). Outranks transferred."""
        return self._mark(call_id, "escalated")

    def hung_up(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        """The agent's leg of an answered call ended; an open hold ends with it. Wrap-up starts."""
        with self._transaction() as conn:
            row = self._open(conn, call_id)
            if row is None or row["end_mono"] is not None:
                return False
            if row["answer_mono"] is None:
                # Never answered: a hang-up while ringing is the caller abandoning (inbound)
                # or the agent giving up (outbound). Either way the call was not handled.
                self._finish_unanswered(conn, row, "abandoned", float(mono), to_epoch(wall))
                return True
            mono_f = max(float(mono), row["answer_mono"])
            self._end_hold(conn, row["id"], mono_f, to_epoch(wall))
            conn.execute(
                "UPDATE calls SET end_mono = ?, end_wall = ? WHERE id = ?", (mono_f, to_epoch(wall), row["id"])
            )
            return True

    def analytics(self, call_id: str, figures: dict[str, Any]) -> bool:
        """The audio pipeline's figures for an answered call (once; a later copy is ignored). A call
        already completed (no wrap-up) is sent to the floor again with them."""
        text = analytics_json(figures)
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE calls SET analytics = ?, floor_summary = CASE WHEN completed = 1 THEN NULL"
                " ELSE floor_summary END WHERE call_id = ? AND answer_mono IS NOT NULL AND analytics IS NULL",
                (text, call_id),
            )
            return cursor.rowcount == 1

    def wrap_up_ended(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        """After-call work is done: the call is completed. (No wrap-up configured: call it at hang-up.)"""
        with self._transaction() as conn:
            row = self._open(conn, call_id)
            if row is None or row["end_mono"] is None:
                return False
            self._complete(conn, row, max(float(mono), row["end_mono"]), to_epoch(wall))
            return True

    def close_interrupted(self, call_id: str, *, wall: datetime | float, mono: float | None) -> bool:
        """Complete an open call that a daemon restart cut short (its end was not seen), at the last
        moment the old run was known alive (``mono`` on the old run's clock; None: its last reading).
        Marked ``ended_by = 'restart'``. A call never answered counts as abandoned (not handled);
        an answered one ends there, with what was left of its wrap-up cut."""
        with self._transaction() as conn:
            row = self._open(conn, call_id)
            if row is None:
                return False
            latest = conn.execute(
                "SELECT max(ring_mono, coalesce(answer_mono, ring_mono), coalesce(end_mono, ring_mono),"
                " coalesce((SELECT max(max(start_mono, coalesce(end_mono, start_mono))) FROM holds WHERE call = c.id),"
                " ring_mono)) FROM calls c WHERE id = ?",
                (row["id"],),
            ).fetchone()[0]
            end = latest if mono is None else max(float(mono), latest)
            epoch = to_epoch(wall)
            if row["answer_mono"] is None:
                self._finish_unanswered(conn, row, "abandoned", end, epoch)
            else:
                self._end_hold(conn, row["id"], end, epoch)
                if row["end_mono"] is None:
                    conn.execute("UPDATE calls SET end_mono = ?, end_wall = ? WHERE id = ?", (end, epoch, row["id"]))
                    row = self._open(conn, call_id)
                self._complete(conn, row, end, epoch)
            conn.execute("UPDATE calls SET ended_by = ? WHERE id = ?", (ENDED_BY_RESTART, row["id"]))
            return True

    def heartbeat(self, *, wall: datetime | float, mono: float) -> None:
        """The daemon is alive now: a restart closes what it cut short at the last of these."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('alive', ?)", (f"{to_epoch(wall)!r} {float(mono)!r}",)
            )

    def last_alive(self) -> tuple[float, float] | None:
        """The last heartbeat as (wall epoch seconds, monotonic seconds), or None."""
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'alive'").fetchone()
        try:
            wall, mono = (float(part) for part in str(row[0]).split())
        except (TypeError, ValueError):  # none yet, or not ours: the calls' own last readings serve
            return None
        return wall, mono

    def missed(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        """The call rang and the agent did not answer (ring-no-answer, rejected). Completes it."""
        return self._unanswered(call_id, "missed", wall, mono)

    def abandoned(self, call_id: str, *, wall: datetime | float, mono: float) -> bool:
        """The caller hung up while it was ringing. Completes it."""
        return self._unanswered(call_id, "abandoned", wall, mono)

    # ------------------------------------------------------------------ resume

    def open_calls(self) -> list[OpenCall]:
        """Calls in progress (not completed), for a restarted daemon to resume by Call-ID."""
        with self._lock:
            rows = self.conn.execute(
                "SELECT call_id, agent, direction, answer_mono IS NOT NULL, end_mono IS NOT NULL, outcome,"
                " EXISTS (SELECT 1 FROM holds h WHERE h.call = c.id AND h.end_mono IS NULL)"
                " FROM calls c WHERE completed = 0 ORDER BY id"
            ).fetchall()
        return [
            OpenCall(
                call_id=call_id,
                agent=agent,
                direction=direction,
                answered=bool(answered),
                on_hold=bool(on_hold),
                hung_up=bool(hung_up),
                outcome=outcome,
            )
            for call_id, agent, direction, answered, hung_up, outcome, on_hold in rows
        ]

    def purge(self, *, older_than_days: float, numbers_only: bool = False, now: float | None = None) -> int:
        """Apply the retention period; see :func:`offhook.metrics.privacy.purge`."""
        with self._lock:
            return privacy.purge(self.conn, older_than_days=older_than_days, numbers_only=numbers_only, now=now)

    # ------------------------------------------------------------------ the floor's outbox

    def floor_enable(self) -> int:
        """Start the outbox cursor (from then on the retention purge keeps undelivered calls); returns it."""
        with self._transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('floor_acked', '0')")
        return self.floor_acked()

    def floor_acked(self) -> int:
        """The highest floor_seq central has acknowledged (0: none; -1: no floor set up)."""
        with self._lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'floor_acked'").fetchone()
        return -1 if row is None else int(row[0])

    def floor_ack(self, upto: int) -> bool:
        """Central committed every record up to ``upto``: advance the cursor (never back)."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE meta SET value = ? WHERE key = 'floor_acked' AND CAST(value AS INTEGER) < ?", (str(upto), upto)
            )
            return cursor.rowcount == 1

    def floor_pending(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Completed calls numbered above ``after``, oldest first; numbers newly completed calls first."""
        due_sql = "SELECT id, summary FROM calls WHERE completed = 1 AND floor_summary IS NOT summary ORDER BY id"
        with self._lock:
            any_due = self.conn.execute(f"{due_sql} LIMIT 1").fetchone() is not None
        if any_due:  # numbering writes (an fsync): only when a call completed since
            with self._transaction() as conn:
                due = conn.execute(due_sql).fetchall()
                row = conn.execute("SELECT value FROM meta WHERE key = 'floor_seq'").fetchone()
                last = int(row[0]) if row is not None else 0
                for number, (call, text) in enumerate(due, start=last + 1):
                    conn.execute("UPDATE calls SET floor_seq = ?, floor_summary = ? WHERE id = ?", (number, text, call))
                upto = str(last + len(due))
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('floor_seq', ?)", (upto,))
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {', '.join(FLOOR_RECORD_COLUMNS)} FROM calls WHERE floor_seq > ? AND completed = 1"
                " AND floor_summary IS summary ORDER BY floor_seq LIMIT ?",
                (after, limit),
            ).fetchall()
        records = [dict(zip(FLOOR_RECORD_COLUMNS, row, strict=True)) for row in rows]
        for record in records:  # an object on the wire, null when no pipeline metered the call
            record["analytics"] = json.loads(record["analytics"]) if record["analytics"] else None
        return records

    # ------------------------------------------------------------------ internals

    def _open(self, conn: sqlite3.Connection, call_id: str) -> Any:
        return conn.execute(
            "SELECT id, ring_mono, answer_mono, end_mono, outcome, local_start FROM calls"
            " WHERE call_id = ? AND completed = 0",
            (call_id,),
        ).fetchone()

    def _mark(self, call_id: str, outcome: str) -> bool:
        with self._transaction() as conn:
            row = self._open(conn, call_id)
            if row is None or row["answer_mono"] is None or row["outcome"] in (outcome, "escalated"):
                return False
            conn.execute("UPDATE calls SET outcome = ? WHERE id = ?", (outcome, row["id"]))
            return True

    def _unanswered(self, call_id: str, outcome: str, wall: datetime | float, mono: float) -> bool:
        with self._transaction() as conn:
            row = self._open(conn, call_id)
            if row is None or row["answer_mono"] is not None:
                return False
            self._finish_unanswered(conn, row, outcome, float(mono), to_epoch(wall))
            return True

    @staticmethod
    def _finish_unanswered(conn: sqlite3.Connection, row: Any, outcome: str, mono: float, wall: float) -> None:
        end = max(mono, row["ring_mono"])
        conn.execute(
            "UPDATE calls SET end_mono = ?, end_wall = ?, outcome = ?, completed = 1, ring_s = ?, summary = ?"
            " WHERE id = ?",
            (
                end,
                wall,
                outcome,
                end - row["ring_mono"],
                summary(outcome, row["local_start"], end - row["ring_mono"]),
                row["id"],
            ),
        )

    def _complete(self, conn: sqlite3.Connection, row: Any, wrap_mono: float, wall: float) -> None:
        """Derive a handled call's figures and mark it completed (its hang-up is recorded)."""
        hold_s, holds, long_holds = self._hold_totals(conn, row["id"])
        ring_s = row["answer_mono"] - row["ring_mono"]
        talk_s = max(0.0, row["end_mono"] - row["answer_mono"] - hold_s)
        wrap_s = wrap_mono - row["end_mono"]
        conn.execute(
            "UPDATE calls SET wrap_mono = ?, wrap_wall = ?, completed = 1, ring_s = ?, talk_s = ?, hold_s = ?,"
            " wrap_s = ?, holds = ?, long_holds = ?, summary = ? WHERE id = ?",
            (
                wrap_mono,
                wall,
                ring_s,
                talk_s,
                hold_s,
                wrap_s,
                holds,
                long_holds,
                summary(row["outcome"], row["local_start"], ring_s, talk_s, hold_s, wrap_s, holds, long_holds),
                row["id"],
            ),
        )

    @staticmethod
    def _end_hold(conn: sqlite3.Connection, call: int, mono: float, wall: float) -> bool:
        cursor = conn.execute(
            "UPDATE holds SET end_mono = max(?, start_mono), end_wall = ? WHERE call = ? AND end_mono IS NULL",
            (mono, wall, call),
        )
        return cursor.rowcount > 0

    @staticmethod
    def _hold_totals(conn: sqlite3.Connection, call: int) -> tuple[float, int, int]:
        row = conn.execute(
            "SELECT coalesce(sum(end_mono - start_mono), 0.0), count(*), coalesce(sum(end_mono - start_mono > ?), 0)"
            " FROM holds WHERE call = ? AND end_mono IS NOT NULL",
            (LONG_HOLD_S, call),
        ).fetchone()
        return float(row[0]), int(row[1]), int(row[2])
