"""Report figures from one or more stores or exports: counts, spreads, AHT, rates.

Definitions (printed by `offhook report --help` and in docs/metrics.md):

- *handled* calls: answered by the agent, including those later transferred or
  escalated; missed (not answered by the agent) and abandoned (the caller hung up
  while it rang) calls are not handled.
- ring: ring start to answer of handled calls (average speed of answer); talk: answer
  to hang-up minus hold; hold: sum of the call's holds; wrap-up: hang-up to wrap-up end.
- AHT = (talk + hold + wrap-up) summed over handled calls / number of handled calls.
- missed/abandoned rate = (missed + abandoned) / all calls.
- long holds: holds longer than 2 minutes (the customer was not checked on in time);
  check-in compliance = (holds - long holds) / holds, the same computation
  (offhook.audio.analytics.missed_checkins on the holds table).
- conversation analytics (docs/analytics.md): means over the handled calls the audio
  pipeline metered (``analytics_calls``); a call without figures is left out of a mean,
  never counted as zero, and a group with none has no value.
- median and p90 interpolate linearly between ranks (numpy's default, Excel's PERCENTILE.INC).
- a day (and an hour) is the agent's local time at ring start, in the agent's time zone.

How it stays fast over a million calls: SQLite only filters and groups (it walks the
day index without sorting); each (local day, agent)'s calls arrive as one
``group_concat`` of their fixed-layout ``summary`` text (see store.SUMMARY_FIELDS),
which numpy parses in C. Every call then gets a group number, and counts, means and
percentiles of all groups come from a few whole-array passes (bincount, one sort per
timing), never a Python loop per group: 43,800 hour groups cost what 366 days do.
Only completed calls count.

Several sources (stores, exports) add up. A call is one record by its store's id and
its SIP Call-ID: the same call in two sources is refused (it would count twice), while
two desks on one direct call (one Call-ID, two stores) are two records, and exports of
one store for periods that do not overlap combine. An agent is its name within its
store: one name in two stores is reported as two agents, with a warning.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

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

_HANDLED = np.array([outcome in HANDLED_OUTCOMES for outcome in OUTCOMES])  # by outcome code
_F = {name: i for i, name in enumerate(store.SUMMARY_FIELDS)}
_TIMING_NAMES = ("ring_ms", "talk_ms", "hold_ms", "wrap_ms", "holds", "long_holds")
_TIMINGS = slice(_F["ring_ms"], _F["long_holds"] + 1)  # the summary keeps them side by side, in this order
assert [_F[name] for name in _TIMING_NAMES] == list(range(_TIMINGS.start, _TIMINGS.stop))
# An hour group is (local day, local hour, UTC offset): hour << 11 | offset + 1024 fits 16 bits
# (offsets run from -12:00 to +14:00, -720 to +840 minutes).
_OFFSET_BIAS = 1024
_HOUR_BITS = 16

# Terminal controls (C0, DEL, C1: escape sequences, bell, backspace) and the bidi controls
# that reorder what a line shows: never printed as they are.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every terminal or bidi control replaced by U+FFFD, safe to print anywhere."""
    return text if text.isprintable() else _UNPRINTABLE.sub("\ufffd", text)


@dataclass(frozen=True)
class ReportQuery:
    """What to report: an inclusive range of the agents' local dates, one agent, a grouping."""

    since: date | None = None
    until: date | None = None
    agent: str | None = None
    by: str | None = None

    def __post_init__(self) -> None:
        if self.by is not None and self.by not in BY_CHOICES:
            raise MetricsError(f"--by must be one of {', '.join(BY_CHOICES)}, not {self.by!r}")
        if self.since and self.until and self.since > self.until:
            raise MetricsError(f"--since {self.since} is after --until {self.until}")


class Spread(NamedTuple):
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


# Conversation analytics averaged per group (store.ANALYTICS_FIELDS, "quality." for the nested ones).
ANALYTICS_MEANS = (
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
_NO_ANALYTICS = (0, *(None for _ in ANALYTICS_MEANS))


# The columns of a flat row (CSV, JSON), durations in seconds.
FLAT_FIELDS = (
    "group",
    "calls",
    "handled",
    "answered",
    "missed",
    "abandoned",
    "transferred",
    "escalated",
    "missed_abandoned_rate",
    *(f"{name}_{figure}_s" for name in ("ring", "talk", "hold", "wrap") for figure in ("mean", "median", "p90")),
    "aht_s",
    "holds",
    "long_holds",
    "checkin_compliance",
    "analytics_calls",
    *(f"{name.rsplit('.', 1)[-1]}_mean" for name in ANALYTICS_MEANS),
)


@dataclass(slots=True)  # not frozen: 43,800 hour rows are built 5x faster
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
    checkin_compliance: float | None = None
    analytics: tuple[Any, ...] = _NO_ANALYTICS  # analytics_calls, then the ANALYTICS_MEANS

    def flat(self) -> dict[str, Any]:
        """One flat mapping (CSV columns, JSON objects), durations in seconds."""
        return dict(zip(FLAT_FIELDS, self.values(), strict=True))

    def values(self) -> list[Any]:
        """The FLAT_FIELDS values, rounded (ms precision, rates to 0.01 %)."""
        values: list[Any] = [
            self.group,
            self.calls,
            self.handled,
            self.answered,
            self.missed,
            self.abandoned,
            self.transferred,
            self.escalated,
            None if self.missed_rate is None else round(self.missed_rate, 4),
        ]
        for spread in (self.ring, self.talk, self.hold, self.wrap):
            values += [None if value is None else round(value, 3) for value in spread]
        values += [None if self.aht_s is None else round(self.aht_s, 3), self.holds, self.long_holds]
        values.append(None if self.checkin_compliance is None else round(self.checkin_compliance, 4))
        values += [self.analytics[0], *(None if v is None else round(v, 3) for v in self.analytics[1:])]
        return values


@dataclass
class Report:
    query: ReportQuery
    total: ReportRow
    ring_ms: np.ndarray  # every handled call's ring time (ms), for the distribution chart
    agents: list[str] = field(default_factory=list)  # the agents whose calls count, as rows name them
    first_day: str | None = None  # the first and last local day with a call that counts
    last_day: str | None = None
    warnings: list[str] = field(default_factory=list)  # for the reader, e.g. one agent name in two stores
    figures: _Figures | None = None  # the groups' figures (None without --by)

    def period(self) -> str:
        """The dates the report covers: the asked range, its open ends closed by the calls found."""
        since = self.query.since.isoformat() if self.query.since else self.first_day
        until = self.query.until.isoformat() if self.query.until else self.last_day
        if since and until:
            return f"{since} to {until}"
        return f"from {since}" if since else f"until {until}" if until else "no calls"

    @cached_property
    def rows(self) -> list[ReportRow]:
        """One per group, sorted by group."""
        return self.figures.rows() if self.figures is not None else []

    def flat_rows(self, missing: Any = None, text: Callable[[str], str] = str) -> Iterator[Sequence[Any]]:
        """The FLAT_FIELDS values of every group, then of the total: rounded, ``missing`` where a group has no
        figure (no handled call), each group's name through ``text``. Column by column, for 43,800 hours."""
        if self.figures is not None:
            yield from self.figures.flat(missing, text)
        total = self.total.values()
        yield [text(total[0]), *(missing if value is None else value for value in total[1:])]

    def as_json(self) -> dict[str, Any]:
        flat = [dict(zip(FLAT_FIELDS, values, strict=True)) for values in self.flat_rows()]
        return {
            "definition": AHT_DEFINITION,
            "query": {
                "since": self.query.since.isoformat() if self.query.since else None,
                "until": self.query.until.isoformat() if self.query.until else None,
                "agent": self.query.agent,
                "by": self.query.by,
            },
            "groups": flat[:-1],
            "total": flat[-1],
            "warnings": self.warnings,
        }


def open_sources(paths: Sequence[Path], query: ReportQuery | None = None) -> list[sqlite3.Connection]:
    """Open every store/export read-only; refuse two sources that hold one call (it would count twice).

    A call is its store's id and its Call-ID; only the calls ``query`` selects are compared.
    """
    if not paths:
        raise MetricsError("no metrics database given")
    connections: list[sqlite3.Connection] = []
    of_store: dict[str, list[Path]] = {}
    try:
        for path in paths:
            conn = store.connect(path, readonly=True)
            connections.append(conn)
            origin = store.store_id(conn)
            if origin is None:
                continue
            for earlier in of_store.get(origin, []):
                call = _shared_call(earlier, path, query or ReportQuery())
                if call is not None:
                    raise MetricsError(
                        f"{earlier} and {path} hold the same call {printable(call)!r} of the same store;"
                        " give only one of them (exports of one store combine when their periods do not overlap)"
                    )
            of_store.setdefault(origin, []).append(path)
    except BaseException:
        for conn in connections:
            conn.close()
        raise
    return connections


def _shared_call(first: Path, second: Path, query: ReportQuery) -> str | None:
    """A Call-ID both files hold among the calls ``query`` selects, or None.

    A call's local day never changes, so only the days both files have can share a call:
    exports of 1-15 and 16-31 March never meet; otherwise the smaller side's calls of the
    common days are looked up in the other's Call-ID index.
    """
    where, params = where_clause(query)
    conn = sqlite3.connect("file::memory:", uri=True)
    try:
        for name, path in (("a", first), ("b", second)):
            conn.execute(f"ATTACH DATABASE ? AS {name}", (f"{path.resolve().as_uri()}?mode=ro",))
        span = f"SELECT min(local_day), max(local_day), count(*) FROM {{}}.calls WHERE {where}"
        spans = {name: conn.execute(span.format(name), params).fetchone() for name in ("a", "b")}
        low, high = max(spans["a"][0] or "", spans["b"][0] or ""), min(spans["a"][1] or "", spans["b"][1] or "")
        if not (spans["a"][2] and spans["b"][2]) or low > high:
            return None
        outer, inner = ("a", "b") if spans["a"][2] <= spans["b"][2] else ("b", "a")
        row = conn.execute(
            f"SELECT call_id FROM {outer}.calls AS x WHERE {where} AND local_day BETWEEN ? AND ? AND EXISTS"
            f" (SELECT 1 FROM {inner}.calls WHERE call_id = x.call_id AND {where}) LIMIT 1",
            [*params, low, high, *params],
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise MetricsError(f"{first} and {second} cannot be compared: {exc}") from None
    finally:
        conn.close()
    return None if row is None else str(row[0])


def build(sources: Iterable[sqlite3.Connection], query: ReportQuery) -> Report:
    """Aggregate the calls of every source that match the query into one report."""
    where, params = where_clause(query)
    sql = f"SELECT local_day, agent, group_concat(summary) FROM calls WHERE {where} GROUP BY local_day, agent"
    width = len(store.SUMMARY_FIELDS)
    groups: dict[Any, int] = {}  # group key -> number: the day, (agent, store), or the one total
    pieces: list[int] = []  # each fetched (day, agent)'s group number ...
    piece_calls: list[int] = []  # ... and its number of calls
    outcomes: list[np.ndarray] = []
    hours: list[np.ndarray] = []  # local hour and UTC offset of each call (--by hour)
    offsets: list[np.ndarray] = []
    timings: list[np.ndarray] = []
    stores_of: dict[str, list[str]] = {}  # agent name -> the stores it is in
    days: list[str] = []
    sources_seen: list[tuple[sqlite3.Connection, str]] = []
    for index, conn in enumerate(sources):
        origin = store.store_id(conn) or f"source {index + 1}"
        sources_seen.append((conn, origin))
        for day, agent, summaries in conn.execute(sql, params):
            if not summaries:  # cannot happen for calls the recorder completed; never crash on it
                continue
            try:
                # numpy's C parser: ~10x np.array(text.split(",")); int32 ms holds 24 days per call
                calls = np.fromstring(summaries, sep=",", dtype=np.int32).reshape(-1, width)
                handled = _HANDLED[calls[:, _F["outcome"]]]
            except (ValueError, IndexError):
                raise MetricsError(f"malformed call summaries on {day} for agent {agent!r}") from None
            if origin not in stores_of.setdefault(agent, []):
                stores_of[agent].append(origin)
            days.append(day)
            key = (agent, origin) if query.by == "agent" else day if query.by in ("day", "hour") else None
            pieces.append(groups.setdefault(key, len(groups)))
            piece_calls.append(len(calls))
            outcomes.append(calls[:, _F["outcome"]].astype(np.int8))
            timings.append(calls[handled, _TIMINGS].T)  # joined below as one contiguous row per timing
            if query.by == "hour":
                hours.append(calls[:, _F["local_hour"]].astype(np.int8))
                offsets.append(calls[:, _F["utc_offset_min"]].astype(np.int16))
            del calls
    outcome = np.concatenate(outcomes) if outcomes else np.zeros(0, dtype=np.int8)
    data = np.concatenate(timings, axis=1) if timings else np.zeros((len(_TIMING_NAMES), 0), dtype=np.int32)
    del outcomes, timings
    hour = np.concatenate(hours) if hours else np.zeros(0, dtype=np.int8)
    offset = np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.int16)
    del hours, offsets
    if (outcome.size and outcome.min() < 0) or (
        hour.size
        and (hour.min() < 0 or hour.max() > 23 or offset.min() < -_OFFSET_BIAS or offset.max() >= _OFFSET_BIAS)
    ):
        raise MetricsError("malformed call summaries: an outcome, hour or UTC offset out of range")
    total_counts = np.bincount(outcome, minlength=len(OUTCOMES))[None, :]
    labels, warnings = _agent_labels(stores_of, query)
    sums = _analytics_sums(sources_seen, query)
    whole = _Figures.of([TOTAL], total_counts, data, np.zeros(data.shape[1], dtype=np.int64))
    whole.analytics = sum(sums.values(), np.zeros(_ANALYTICS_WIDTH))[None, :]
    total = whole.rows()[0]
    report = Report(
        query,
        total,
        data[0].copy(),
        agents=sorted({label for labels_of in labels.values() for label in labels_of.values()}),
        first_day=min(days) if days else None,
        last_day=max(days) if days else None,
        warnings=warnings,
    )
    if query.by is None:
        return report
    # Every call's group number, then the groups renumbered in their sorted order.
    call_group = np.repeat(np.array(pieces, dtype=np.int64), piece_calls)
    keys = list(groups)
    if query.by == "hour":
        names, call_group = _hour_groups(keys, call_group, (hour.astype(np.int64) << 11) + offset + _OFFSET_BIAS)
    else:
        if query.by == "agent":
            labelled = [labels[agent][origin] for agent, origin in keys]
            order = sorted(range(len(keys)), key=lambda g: (labelled[g], keys[g][1]))
            names = [labelled[g] for g in order]
        else:
            order = sorted(range(len(keys)), key=keys.__getitem__)
            names = [keys[g] for g in order]
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        call_group = rank[call_group]
    counts = np.bincount(call_group * len(OUTCOMES) + outcome, minlength=len(names) * len(OUTCOMES))
    report.figures = _Figures.of(names, counts.reshape(-1, len(OUTCOMES)), data, call_group[_HANDLED[outcome]])
    position = {name: i for i, name in enumerate(names)}
    report.figures.analytics = np.zeros((len(names), _ANALYTICS_WIDTH))
    for (key, origin), values in sums.items():
        name = labels[key][origin] if query.by == "agent" else key
        if name in position:
            report.figures.analytics[position[name]] += values
    return report


_ANALYTICS_WIDTH = 1 + 2 * len(ANALYTICS_MEANS)  # calls with figures, then (sum, count) per mean
_ANALYTICS_GROUP = {  # the group's name as build() names it, from a calls row
    None: "''",
    "day": "local_day",
    "agent": "agent",
    "hour": "local_day || 'T' || substr(local_start, 12, 2) || ':00' || substr(local_start, -6)",
}


def agent_shares(sources: Iterable[sqlite3.Connection], query: ReportQuery) -> dict[str, np.ndarray]:
    """Every metered call's agent talk share, per agent name (for the spread chart); stores before
    version 4 have none."""
    where, params = where_clause(query)
    sql = (
        f"SELECT agent, json_extract(analytics, '$.agent_share') FROM calls WHERE {where}"
        " AND json_extract(analytics, '$.agent_share') IS NOT NULL"
    )
    shares: dict[str, list[float]] = {}
    for conn in sources:
        if "analytics" not in {row[1] for row in conn.execute("PRAGMA table_info(calls)")}:
            continue
        for agent, share in conn.execute(sql, params):
            if isinstance(share, int | float):
                shares.setdefault(agent, []).append(float(share))
    return {agent: np.array(values) for agent, values in shares.items()}


def _analytics_sums(sources: list[tuple[sqlite3.Connection, str]], query: ReportQuery) -> dict[Any, np.ndarray]:
    """Per (group, store): the metered calls and each mean's sum and count of values (NULLs skipped).
    Stores older than version 4 have no analytics column: their calls have no figures."""
    where, params = where_clause(query)
    picks = []
    for name in ANALYTICS_MEANS:
        value = f"json_extract(analytics, '$.{name}')"
        picks += [f"total({value})", f"count({value})"]
    group = _ANALYTICS_GROUP[query.by]
    sql = f"SELECT {group}, count(*), {', '.join(picks)} FROM calls WHERE {where} AND analytics IS NOT NULL GROUP BY 1"
    sums: dict[Any, np.ndarray] = {}
    for conn, origin in sources:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
        if "analytics" not in columns:
            continue
        try:
            rows = conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise MetricsError(f"malformed call analytics: {exc}") from None
        for key, *values in rows:
            sums[(key, origin)] = np.array(values, dtype=np.float64)
    return sums


def _agent_labels(stores_of: dict[str, list[str]], query: ReportQuery) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Each (agent, store)'s row name: the agent's name, with its store's id where two stores share the name."""
    labels: dict[str, dict[str, str]] = {}
    warnings = []
    for agent, origins in stores_of.items():
        if len(origins) == 1:
            labels[agent] = {origins[0]: agent}
            continue
        labels[agent] = {origin: f"{agent} (store {origin[:8]})" for origin in origins}
        ids = ", ".join(origin[:8] for origin in origins)
        if query.by == "agent":
            warnings.append(
                f"agent {agent!r} is in {len(origins)} stores ({ids}): reported apart as "
                + ", ".join(repr(label) for label in labels[agent].values())
            )
        elif query.agent is not None:
            warnings.append(
                f"agent {agent!r} is in {len(origins)} stores ({ids}): counted together here; "
                "--by agent reports them apart"
            )
    return labels, warnings


def _hour_groups(days: list[str], call_day: np.ndarray, hour: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The (local day, hour, UTC offset) groups, '2026-10-25T02:00+02:00', in time order, and each call's.

    ``call_day`` indexes ``days``; ``hour`` is local_hour << 11 | offset + 1024. No sort of the calls: the
    few offsets seen get dense numbers, so (day, hour, offset) is a small integer that bincount counts.
    Of two equal local hours (DST ending) the one with the larger UTC offset came first.
    """
    offsets = np.flatnonzero(np.bincount(hour & 2047, minlength=2048))  # biased, ascending
    offset_number = np.zeros(2048, dtype=np.int64)
    offset_number[offsets] = np.arange(len(offsets))
    per_day = 24 * len(offsets)
    cell = call_day * per_day + (hour >> 11) * len(offsets) + offset_number[hour & 2047]
    used = np.flatnonzero(np.bincount(cell)) if len(cell) else np.zeros(0, dtype=np.int64)
    day, rest = np.divmod(used, per_day)
    local_hour, offset = np.divmod(rest, len(offsets)) if len(offsets) else (rest, rest)
    day_rank = np.empty(len(days), dtype=np.int64)
    day_rank[sorted(range(len(days)), key=days.__getitem__)] = np.arange(len(days))
    order = np.argsort((day_rank[day] * 24 + local_hour) * len(offsets) + (len(offsets) - 1 - offset), kind="stable")
    number = np.zeros(per_day * len(days), dtype=np.int64)
    number[used[order]] = np.arange(len(used))
    suffix = []
    for biased in offsets.tolist():
        minutes = biased - _OFFSET_BIAS
        suffix.append(f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}")
    names = [
        f"{days[d]}T{h:02d}:00{suffix[o]}"
        for d, h, o in zip(day[order].tolist(), local_hour[order].tolist(), offset[order].tolist(), strict=True)
    ]
    return names, number[cell]


def _spreads(values: np.ndarray, group_index: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Mean, median and p90 of ``values`` (milliseconds) per group, in seconds, one sort for all groups.

    Each value is sorted inside its own group by offsetting it with the group's index
    (durations stay far below 2**40 ms, 34 years), then the ranks are read with linear
    interpolation exactly as numpy.percentile does: thousands of groups in one pass.
    """
    if len(values) == 0:
        return [np.zeros(len(sizes)) for _ in range(3)]
    ordered = group_index << 40
    ordered += values
    ordered.sort()
    ordered &= (1 << 40) - 1
    sums = np.bincount(group_index, weights=values, minlength=len(sizes))
    ends = np.cumsum(sizes)
    starts = ends - sizes
    last = np.maximum(sizes - 1, 0)
    figures = [sums / np.maximum(sizes, 1) / 1000.0]
    for q in (0.5, 0.9):
        position = last * q
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, last)
        low_value = ordered[np.minimum(starts + low, len(ordered) - 1)]
        high_value = ordered[np.minimum(starts + high, len(ordered) - 1)]
        figures.append((low_value + (high_value - low_value) * (position - low)) / 1000.0)
    return figures


_CODE = {outcome: OUTCOMES.index(outcome) for outcome in OUTCOMES}
_SPREAD_NAMES = ("ring", "talk", "hold", "wrap")


@dataclass
class _Figures:
    """Every group's figures as arrays, one entry per group: rows and flat output are read from here.

    43,800 hour groups become CSV without a ReportRow each (column by column: 4x faster).
    """

    names: list[str]
    counts: np.ndarray  # group x outcome (OUTCOMES order)
    sizes: np.ndarray  # handled calls per group
    spreads: list[list[np.ndarray]]  # ring, talk, hold, wrap -> mean, median, p90 in seconds
    totals: np.ndarray  # group x (talk, hold, wrap, holds, long_holds), summed over handled calls
    analytics: np.ndarray | None = None  # group x _ANALYTICS_WIDTH (_analytics_sums), set by build()

    @classmethod
    def of(cls, names: list[str], counts: np.ndarray, columns: np.ndarray, group_index: np.ndarray) -> _Figures:
        """``counts`` by outcome; ``columns``: the handled calls' timings, one row per _TIMING_NAMES;
        ``group_index``: their groups."""
        sizes = np.bincount(group_index, minlength=len(names))
        spreads = [_spreads(columns[i], group_index, sizes) for i in range(len(_SPREAD_NAMES))]
        # Exact while a group's sum stays below 2**53 ms (285,000 years of calls).
        if len(names) == 1:
            totals = columns[1:6].sum(axis=1, dtype=np.float64)[None, :]
        else:
            totals = np.stack(
                [np.bincount(group_index, weights=columns[i], minlength=len(names)) for i in range(1, 6)], 1
            )
        return cls(names, counts, sizes, spreads, totals)

    def columns(self, digits: bool = False, missing: Any = None) -> list[list[Any]]:
        """The FLAT_FIELDS columns (rounded with ``digits``), ``missing`` where a group has no calls to take a
        figure from (timings without handled calls, the rate of an empty total)."""
        count = self.counts.T.tolist()
        calls = self.counts.sum(axis=1)
        handled = self.counts[:, [_CODE[outcome] for outcome in HANDLED_OUTCOMES]].sum(axis=1)
        missed = self.counts[:, _CODE["missed"]] + self.counts[:, _CODE["abandoned"]]
        aht = (self.totals[:, 0] + self.totals[:, 1] + self.totals[:, 2]) / np.maximum(handled, 1) / 1000.0
        convert = _rounded if digits else lambda values, _: values.tolist()
        rate = convert(missed / np.maximum(calls, 1), 4)
        timings = [convert(figure, 3) for figure in [*(f for spread in self.spreads for f in spread), aht]]
        for i in np.flatnonzero(handled == 0).tolist():
            for column in timings:
                column[i] = missing
        for i in np.flatnonzero(calls == 0).tolist():  # only an empty total
            rate[i] = missing
        holds, long_holds = self.totals[:, 3], self.totals[:, 4]
        compliance = convert((holds - long_holds) / np.maximum(holds, 1), 4)
        for i in np.flatnonzero(holds == 0).tolist():
            compliance[i] = missing
        sums = self.analytics if self.analytics is not None else np.zeros((len(self.names), _ANALYTICS_WIDTH))
        means = []
        for k in range(len(ANALYTICS_MEANS)):
            summed, valued = sums[:, 1 + 2 * k], sums[:, 2 + 2 * k]
            mean = convert(summed / np.maximum(valued, 1), 3)
            for i in np.flatnonzero(valued == 0).tolist():  # no metered call: no value, never zero
                mean[i] = missing
            means.append(mean)
        return [
            self.names,
            calls.tolist(),
            handled.tolist(),
            *(count[_CODE[name]] for name in ("answered", "missed", "abandoned", "transferred", "escalated")),
            rate,
            *timings,
            self.totals[:, 3].astype(np.int64).tolist(),
            self.totals[:, 4].astype(np.int64).tolist(),
            compliance,
            sums[:, 0].astype(np.int64).tolist(),
            *means,
        ]

    def rows(self) -> list[ReportRow]:
        return [
            ReportRow(
                group=values[0],
                calls=values[1],
                handled=values[2],
                answered=values[3],
                missed=values[4],
                abandoned=values[5],
                transferred=values[6],
                escalated=values[7],
                ring=Spread(*values[9:12]),
                talk=Spread(*values[12:15]),
                hold=Spread(*values[15:18]),
                wrap=Spread(*values[18:21]),
                aht_s=values[21],
                missed_rate=values[8],
                holds=values[22],
                long_holds=values[23],
                checkin_compliance=values[24],
                analytics=tuple(values[25:]),
            )
            for values in zip(*self.columns(), strict=True)
        ]

    def flat(self, missing: Any = None, text: Callable[[str], str] = str) -> Iterator[tuple[Any, ...]]:
        """Each group's FLAT_FIELDS values, rounded as ReportRow.values() rounds them."""
        columns = self.columns(digits=True, missing=missing)
        columns[0] = list(map(text, columns[0]))
        return zip(*columns, strict=True)


def _rounded(values: np.ndarray, digits: int) -> list[float]:
    """``[round(v, digits) for v in values]``, 10x faster and equal to it: round() returns the float nearest
    to k / 10**digits, k the exact value * 10**digits rounded to an integer; the float product is within
    1e-6 of the exact one below 2**33, so it gives the same k unless it lies within 1e-6 of a half (a
    tie, or one float error could tip). There, and for larger values, round() itself is asked."""
    scale = 10.0**digits
    scaled = values * scale
    result = (np.rint(scaled) / scale).tolist()
    unsure = (np.abs(np.abs(scaled - np.trunc(scaled)) - 0.5) < 1e-6) | (np.abs(scaled) >= 2.0**33)
    for i in np.flatnonzero(unsure).tolist():
        result[i] = round(float(values[i]), digits)
    return result


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
