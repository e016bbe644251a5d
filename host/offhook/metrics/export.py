"""`offhook metrics export`: one portable file of an agent's completed calls for a supervisor.

Why SQLite and not CSV/JSON lines: the export has exactly the store's schema (and its
schema version), so `offhook report` reads stores and exports alike, at the same
speed, and a future offhook migrates old exports like old stores. It is a single
file (rollback journal, not WAL), written to a temporary name and renamed, so a
crash never leaves half an export. Its ``meta`` table says what it is:
``format = offhook-metrics-export``, ``format_version``, when, which range, and the
id of the store it came from: a call is (store id, Call-ID), so a report refuses to
count one call of a store and of its export twice, and combines exports of one store
for periods that do not overlap. Customer numbers are left out unless asked for: a
supervisor's report does not need them.

Rows are copied by column name, the columns both files have: a store of an older schema
(fewer columns) or with columns this offhook does not know exports all the same.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from offhook.metrics import store
from offhook.metrics.report import ReportQuery, where_clause
from offhook.metrics.store import MetricsError

FORMAT = "offhook-metrics-export"
FORMAT_VERSION = 1


def export(source: Path, target: Path, query: ReportQuery, *, keep_numbers: bool = False, force: bool = False) -> int:
    """Copy the completed calls matching ``query`` (dates, agent) from ``source`` into a new file ``target``."""
    if target.exists() and not force:
        raise MetricsError(f"{target} exists (use --force to replace it)")
    if target.resolve() == source.resolve():
        raise MetricsError("the export must go to another file than the store")
    src = store.connect(source, readonly=True)
    try:
        origin = store.store_id(src)
    finally:
        src.close()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        conn = store.connect(tmp, create=True)
        try:
            try:
                count = _copy(conn, source, query, keep_numbers)
            except store.sqlite3.DatabaseError as exc:  # e.g. a store missing a column the export needs
                raise MetricsError(f"cannot export {source}: {exc}") from None
            info = {
                "format": FORMAT,
                "format_version": str(FORMAT_VERSION),
                "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "since": query.since.isoformat() if query.since else "",
                "until": query.until.isoformat() if query.until else "",
                "agent": query.agent or "",
                "numbers": "kept" if keep_numbers else "left out",
                "calls": str(count),
            }
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", info.items())
            if origin is not None:
                conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('store_id', ?)", (origin,))
            conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            conn.close()
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return count


def _copy(conn: store.sqlite3.Connection, source: Path, query: ReportQuery, keep_numbers: bool) -> int:
    where, params = where_clause(query)
    conn.execute("ATTACH DATABASE ? AS src", (f"{source.resolve().as_uri()}?mode=ro",))
    try:
        calls = _shared_columns(conn, "calls")
        selected = ["NULL" if name == "number" and not keep_numbers else name for name in calls]
        holds = _shared_columns(conn, "holds")
        conn.execute("BEGIN IMMEDIATE")
        try:
            cursor = conn.execute(
                f"INSERT INTO main.calls ({', '.join(calls)}) SELECT {', '.join(selected)} FROM src.calls"
                f" WHERE {where}",
                params,
            )
            count = cursor.rowcount
            conn.execute(
                f"INSERT INTO main.holds ({', '.join(holds)}) SELECT {', '.join(f'h.{name}' for name in holds)}"
                " FROM src.holds h JOIN main.calls c ON c.id = h.call"
            )
        except BaseException:
            conn.execute("ROLLBACK")  # DETACH fails inside an open transaction and would hide the cause
            raise
        conn.execute("COMMIT")
    finally:
        conn.execute("DETACH DATABASE src")
    return count


def _shared_columns(conn: store.sqlite3.Connection, table: str) -> list[str]:
    """The columns of ``table`` in both the export and the source, in the export's order."""
    theirs = {row[1] for row in conn.execute(f"PRAGMA src.table_info({table})")}
    ours = [row[1] for row in conn.execute(f"PRAGMA main.table_info({table})")]
    return [name for name in ours if name in theirs]


def describe(path: Path) -> dict[str, str]:
    """The meta table of a store or export (what `offhook metrics info` would show)."""
    conn = store.connect(path, readonly=True)
    try:
        return store.meta(conn)
    finally:
        conn.close()
