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

How it stays fast over a million calls: SQLite only filters and groups (by day it
walks the day index without sorting); each group's calls arrive as one
``group_concat`` of their fixed-layout ``summary`` text (see store.SUMMARY_FIELDS),
which numpy parses in C; counts, hours, means and percentiles are numpy from there.
Only completed calls count.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
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

# SQLite returns one summary string per (local day, agent), in the order of the day index, so
# it never sorts and no string grows past one agent's day; numpy merges them into the groups
# asked for (hours are split from days: each call's summary carries its local hour and offset).
_GROUP_KEY = {
    None: lambda day, agent: "all",
    "day": lambda day, agent: day,
    "hour": lambda day, agent: day,
    "agent": lambda day, agent: agent,
}
_HANDLED_CODES = np.array([OUTCOMES.index(outcome) for outcome in HANDLED_OUTCOMES])
_F = {name: i for i, name in enumerate(store.SUMMARY_FIELDS)}
_TIMINGS = np.array([_F[name] for name in ("ring_ms", "talk_ms", "hold_ms", "wrap_ms", "holds", "long_holds")])


@dataclass(frozen=True)
class ReportQuery:
    """What to report: an inclusive range of the agents' local dates, one agent, a grouping."""

    since: date | None = None
    until: date | None = None
    agent: str | None = None
    by: str | None = None

    def __post_init__(self) -> None:
        if self.by not in _GROUP_KEY:
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
    where, params = where_clause(query)
    sql = f"SELECT local_day, agent, group_concat(summary) FROM calls WHERE {where} GROUP BY local_day, agent"
    width = len(store.SUMMARY_FIELDS)
    key = _GROUP_KEY[query.by]
    parsed: dict[str, list[np.ndarray]] = {}
    for conn in sources:
        for day, agent, summaries in conn.execute(sql, params):
            if not summaries:  # cannot happen for calls the recorder completed; never crash on it
                continue
            # numpy's C parser: ~10x np.array(text.split(",")); int32 ms holds 24 days per call
            calls = np.fromstring(summaries, sep=",", dtype=np.int32).reshape(-1, width)
            parsed.setdefault(str(key(day, agent)), []).append(calls)
    if query.by == "hour":
        parsed = _split_hours(parsed)
    names = sorted(parsed, key=_hour_order if query.by == "hour" else None)
    counts: list[np.ndarray] = []
    handled_parts: list[np.ndarray] = []
    sizes = np.zeros(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        # Piece by piece, freeing each as it is read: the peak stays near one copy of the data.
        parts = parsed.pop(name)
        count = np.zeros(len(OUTCOMES), dtype=np.int64)
        while parts:
            calls = parts.pop()
            outcome = calls[:, _F["outcome"]]
            count += np.bincount(outcome, minlength=len(OUTCOMES))
            handled = calls[np.ix_(np.isin(outcome, _HANDLED_CODES), _TIMINGS)]
            handled_parts.append(handled)
            sizes[i] += len(handled)
            del calls, outcome
        counts.append(count)
    data = np.concatenate(handled_parts) if handled_parts else np.zeros((0, len(_TIMINGS)), dtype=np.int32)
    del handled_parts
    total_counts = np.sum(counts, axis=0) if counts else np.zeros(len(OUTCOMES), dtype=np.int64)
    total = _rows([TOTAL], [total_counts], data, np.array([len(data)], dtype=np.int64))[0]
    rows = _rows(names, counts, data, sizes) if query.by else []
    return Report(query, rows, total, data[:, 0].copy())


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _split_hours(days: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Each day's calls by local hour and UTC offset: '2026-10-25T02:00+02:00' and '…T02:00+01:00'."""
    hours: dict[str, list[np.ndarray]] = {}
    for day in list(days):
        calls = _joined(days.pop(day))
        key = calls[:, _F["local_hour"]].astype(np.int64) * 10_000 + calls[:, _F["utc_offset_min"]] + 5_000
        order = np.argsort(key, kind="stable")
        unique, starts = np.unique(key[order], return_index=True)
        for value, chunk in zip(unique, np.split(calls[order], starts[1:]), strict=True):
            hour, offset = divmod(int(value), 10_000)
            offset -= 5_000
            sign = "+" if offset >= 0 else "-"
            hours[f"{day}T{hour:02d}:00{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"] = [chunk]
    return hours


def _hour_order(name: str) -> tuple[str, int]:
    """Chronological: of two equal local hours (DST ending) the one with the larger UTC offset came first."""
    sign = 1 if name[-6] == "+" else -1
    return name[:-6], -sign * (int(name[-5:-3]) * 60 + int(name[-2:]))


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


def _rows(names: list[str], counts: list[np.ndarray], data: np.ndarray, sizes: np.ndarray) -> list[ReportRow]:
    """One ReportRow per group; ``data`` holds the groups' handled calls consecutively, ``sizes`` their counts."""
    group_index = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    ring, talk, hold, wrap = (_spreads(data[:, i], group_index, sizes) for i in range(4))
    # Exact while a group's sum stays below 2**53 ms (285,000 years of calls).
    totals = np.stack([np.bincount(group_index, weights=data[:, i], minlength=len(sizes)) for i in range(1, 6)], 1)
    rows = []
    for i, name in enumerate(names):
        count = {outcome: int(n) for outcome, n in zip(OUTCOMES, counts[i], strict=True)}
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
