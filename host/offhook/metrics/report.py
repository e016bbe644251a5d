"""Report figures from one or more stores or exports: counts, spreads, AHT, rates.

Definitions (printed by `offhook report --help` and in docs/metrics.md):

- *handled* calls: answered by the agent, including those later transferred or
  escalated; missed (not answered by the agent) and abandoned (the caller hung up
  while it rang) calls are not handled.
- ring: ring start to answer of handled calls (average speed of answer); talk: answer
  to hang-up minus hold; hold: sum of the call's holds; wrap-up: hang-up to wrap-up end.
- AHT = (talk + hold + wrap-up) summed over handled calls / number of handled calls.
- missed/abandoned rate = (missed + abandoned) / all calls.
- long holds: holds longer than 2 minutes (the customer was not checked on in time).
- median and p90 interpolate linearly between ranks (numpy's default, Excel's PERCENTILE.INC).
- a day (and an hour) is the agent's local time at ring start, in the agent's time zone.

How it stays fast over a million calls: SQLite groups and counts; each group's
handled calls arrive as one ``group_concat`` of their fixed-layout ``summary`` text
(see store.SUMMARY_FIELDS), which numpy parses in C. Only completed calls count.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from offhook.metrics import store
from offhook.metrics.store import HANDLED_OUTCOMES, OUTCOMES, MetricsError

BY_CHOICES = ("day", "hour", "agent")
TOTAL = "total"

AHT_DEFINITION = (
    "AHT (average handling time) = (talk + hold + wrap-up) summed over handled calls, divided by their number. "
    "Handled = answered by the agent, including calls later transferred or escalated; missed and abandoned calls "
    "are excluded. Talk excludes hold. Ring time (average speed of answer) is reported separately."
)

# SQL for each grouping; an hour keeps its UTC offset so the repeated hour of a DST change stays two hours.
_GROUP_SQL = {
    None: "'all'",
    "day": "local_day",
    "hour": "substr(local_start, 1, 13) || ':00' || substr(local_start, 20)",
    "agent": "agent",
}
_HANDLED_SQL = ", ".join(f"'{outcome}'" for outcome in HANDLED_OUTCOMES)


@dataclass(frozen=True)
class ReportQuery:
    """What to report: an inclusive range of the agents' local dates, one agent, a grouping."""

    since: date | None = None
    until: date | None = None
    agent: str | None = None
    by: str | None = None

    def __post_init__(self) -> None:
        if self.by not in _GROUP_SQL:
            raise MetricsError(f"--by must be one of {', '.join(BY_CHOICES)}, not {self.by!r}")
        if self.since and self.until and self.since > self.until:
            raise MetricsError(f"--since {self.since} is after --until {self.until}")


@dataclass(frozen=True)
class Spread:
    """Mean, median and 90th percentile of one timing, in seconds (None without handled calls)."""

    mean: float | None
    median: float | None
    p90: float | None

    @classmethod
    def of(cls, milliseconds: np.ndarray) -> Spread:
        if milliseconds.size == 0:
            return cls(None, None, None)
        seconds = milliseconds / 1000.0
        median, p90 = np.percentile(seconds, [50, 90])
        return cls(float(seconds.mean()), float(median), float(p90))


@dataclass(frozen=True)
class ReportRow:
    group: str
    calls: int
    handled: int
    answered: int
    missed: int
    abandoned: int
    transferred: int
    escalated: int
    ring: Spread
    talk: Spread
    hold: Spread
    wrap: Spread
    aht_s: float | None
    missed_rate: float | None
    holds: int
    long_holds: int

    def flat(self) -> dict[str, Any]:
        """One flat mapping (CSV columns, JSON objects), durations in seconds."""
        row: dict[str, Any] = {
            "group": self.group,
            "calls": self.calls,
            "handled": self.handled,
            "answered": self.answered,
            "missed": self.missed,
            "abandoned": self.abandoned,
            "transferred": self.transferred,
            "escalated": self.escalated,
            "missed_abandoned_rate": _round(self.missed_rate, 4),
        }
        for name in ("ring", "talk", "hold", "wrap"):
            spread: Spread = getattr(self, name)
            row[f"{name}_mean_s"] = _round(spread.mean)
            row[f"{name}_median_s"] = _round(spread.median)
            row[f"{name}_p90_s"] = _round(spread.p90)
        row["aht_s"] = _round(self.aht_s)
        row["holds"] = self.holds
        row["long_holds"] = self.long_holds
        return row


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class _Group:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    parts: list[np.ndarray] = field(default_factory=list)  # (n, 6) int64 summaries of handled calls


@dataclass
class Report:
    query: ReportQuery
    rows: list[ReportRow]  # one per group, sorted by group
    total: ReportRow
    ring_ms: np.ndarray  # every handled call's ring time (ms), for the distribution chart

    def as_json(self) -> dict[str, Any]:
        return {
            "definition": AHT_DEFINITION,
            "query": {
                "since": self.query.since.isoformat() if self.query.since else None,
                "until": self.query.until.isoformat() if self.query.until else None,
                "agent": self.query.agent,
                "by": self.query.by,
            },
            "groups": [row.flat() for row in self.rows],
            "total": self.total.flat(),
        }


def open_sources(paths: Sequence[Path]) -> list[sqlite3.Connection]:
    """Open every store/export read-only; refuse two files of the same store (calls would count twice)."""
    if not paths:
        raise MetricsError("no metrics database given")
    connections: list[sqlite3.Connection] = []
    seen: dict[str, Path] = {}
    try:
        for path in paths:
            conn = store.connect(path, readonly=True)
            connections.append(conn)
            origin = store.store_id(conn)
            if origin is not None and origin in seen:
                raise MetricsError(f"{seen[origin]} and {path} hold calls of the same store; give only one of them")
            if origin is not None:
                seen[origin] = path
    except BaseException:
        for conn in connections:
            conn.close()
        raise
    return connections


def build(sources: Iterable[sqlite3.Connection], query: ReportQuery) -> Report:
    """Aggregate the calls of every source that match the query into one report."""
    groups: dict[str, _Group] = {}
    where, params = where_clause(query)
    # One row per group, no GROUP BY on outcome: grouped by day, SQLite walks the day index and never sorts.
    counted = ", ".join(f"sum(outcome = '{outcome}')" for outcome in OUTCOMES)
    sql = (
        f"SELECT {_GROUP_SQL[query.by]} AS grp, {counted},"
        f" group_concat(CASE WHEN outcome IN ({_HANDLED_SQL}) THEN summary END)"
        f" FROM calls WHERE {where} GROUP BY grp"
    )
    for conn in sources:
        for group, *counts, summaries in conn.execute(sql, params):
            entry = groups.setdefault(str(group), _Group())
            for outcome, count in zip(OUTCOMES, counts, strict=True):
                entry.counts[outcome] += count
            if summaries:
                # numpy's C parser, ~10x np.array(text.split()); int32 ms holds 24 days per call
                parsed = np.fromstring(summaries, sep=",", dtype=np.int32)
                entry.parts.append(parsed.reshape(-1, len(store.SUMMARY_FIELDS)))
    names = sorted(groups)
    width = len(store.SUMMARY_FIELDS)
    sizes = np.array([sum(len(part) for part in groups[name].parts) for name in names], dtype=np.int64)
    parts = [part for name in names for part in groups[name].parts]
    for entry in groups.values():
        entry.parts.clear()
    empty = np.zeros((0, width), dtype=np.int32)
    data = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else empty
    del parts
    total_counts = dict.fromkeys(OUTCOMES, 0)
    for entry in groups.values():
        for outcome, count in entry.counts.items():
            total_counts[outcome] += count
    total = _rows([TOTAL], [total_counts], data, np.array([len(data)], dtype=np.int64))[0]
    rows = _rows(names, [groups[name].counts for name in names], data, sizes) if query.by else []
    return Report(query, rows, total, data[:, 0].copy())


def _spreads(values: np.ndarray, group_index: np.ndarray, sizes: np.ndarray) -> list[Spread]:
    """Mean, median and p90 of consecutive runs of ``values`` (milliseconds), one sort for all groups.

    Each value is sorted inside its own group by offsetting it with the group's index
    (durations stay far below 2**40 ms, 34 years), then the ranks are read with linear
    interpolation exactly as numpy.percentile does: thousands of groups in one pass.
    """
    if len(values) == 0:
        return [Spread(None, None, None) for _ in sizes]
    ordered = group_index << 40
    ordered += values
    ordered.sort()
    ordered -= group_index << 40
    ends = np.cumsum(sizes)
    starts = ends - sizes
    sums = np.bincount(group_index, weights=values, minlength=len(sizes))
    last = np.maximum(sizes - 1, 0)
    quantiles = []
    for q in (0.5, 0.9):
        position = last * q
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, last)
        low_value = ordered[np.minimum(starts + low, len(ordered) - 1)]
        high_value = ordered[np.minimum(starts + high, len(ordered) - 1)]
        quantiles.append((low_value + (high_value - low_value) * (position - low)) / 1000.0)
    return [
        Spread(float(sums[i]) / int(size) / 1000.0, float(quantiles[0][i]), float(quantiles[1][i]))
        if size
        else Spread(None, None, None)
        for i, size in enumerate(sizes)
    ]


def _rows(names: list[str], counts: list[dict[str, int]], data: np.ndarray, sizes: np.ndarray) -> list[ReportRow]:
    """One ReportRow per group; ``data`` holds the groups' handled calls consecutively, ``sizes`` their counts."""
    group_index = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    ring, talk, hold, wrap = (_spreads(data[:, i], group_index, sizes) for i in range(4))
    # Exact while a group's sum stays below 2**53 ms (285,000 years of calls).
    totals = np.stack([np.bincount(group_index, weights=data[:, i], minlength=len(sizes)) for i in range(1, 6)], 1)
    rows = []
    for i, name in enumerate(names):
        count = counts[i]
        calls = sum(count.values())
        handled = sum(count[o] for o in HANDLED_OUTCOMES)
        column = totals[i]
        rows.append(
            ReportRow(
                group=name,
                calls=calls,
                handled=handled,
                answered=count["answered"],
                missed=count["missed"],
                abandoned=count["abandoned"],
                transferred=count["transferred"],
                escalated=count["escalated"],
                ring=ring[i],
                talk=talk[i],
                hold=hold[i],
                wrap=wrap[i],
                aht_s=float(column[0] + column[1] + column[2]) / handled / 1000.0 if handled else None,
                missed_rate=(count["missed"] + count["abandoned"]) / calls if calls else None,
                holds=int(column[3]),
                long_holds=int(column[4]),
            )
        )
    return rows


def where_clause(query: ReportQuery) -> tuple[str, list[Any]]:
    clauses, params = ["completed = 1"], []
    if query.since:
        clauses.append("local_day >= ?")
        params.append(query.since.isoformat())
    if query.until:
        clauses.append("local_day <= ?")
        params.append(query.until.isoformat())
    if query.agent is not None:
        clauses.append("agent = ?")
        params.append(query.agent)
    return " AND ".join(clauses), params


def today(conn: sqlite3.Connection, *, agent: str, tz: str, now: datetime | float | None = None) -> dict[str, Any]:
    """The agent's own figures for their local today, for the agent panel (``figures`` message)."""
    epoch = store.to_epoch(now) if now is not None else datetime.now().timestamp()
    local_day = datetime.fromtimestamp(epoch, store.zone(tz)).date()
    report = build([conn], ReportQuery(since=local_day, until=local_day, agent=agent))
    figures = report.total.flat()
    figures["group"] = local_day.isoformat()
    return figures
