"""Floor reports: `offhook report --db postgresql://…` over central's ``calls`` table.

The figures and their definitions are metrics/report.py's, to the millisecond: every timing is
rounded to whole milliseconds first, as the desk's SQLite summary rounds it; means, medians and
90th percentiles are taken over handled calls only (``percentile_cont``: linear interpolation
between ranks, numpy's default); AHT is (talk + hold + wrap-up) summed over handled calls divided
by their number; the missed rate is (missed + abandoned) / all calls; holds and long holds are
summed over handled calls. An agent is its name within its store, as when the desks' SQLite
stores are given to one report; groups come out in the same order, with the same names.

What differs from one desk's report: PostgreSQL aggregates. By default (not by hour) a report
reads ``call_rollups`` (pgstore, migration 7: per store, day and agent, kept in the ingest's own
transaction): PostgreSQL adds the counts and sums and concatenates each group's packed timings,
Python takes the medians and 90th percentiles from them by percentile_cont's own rule; the figures
equal those of :func:`sql` over the calls (tests/floor/test_rollups.py), which ``rollups=False``
and by hour use (one scan, ``GROUPING SETS`` for the groups and the total at once). The floor adds groupings
the desk has no data for, and pairs of them: ``--by site``, ``team`` (the desk's team now, from
its presence), ``month``, and one of agent/team/site with one of day/hour/month
(``--by team,day``). Charts (``--chart``) read SQLite stores only. Conversation analytics are
report.py's too: means over the calls with figures (``calls.analytics``), a figure's nulls skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from offhook.floor import pgstore
from offhook.metrics import report as R
from offhook.metrics.store import HANDLED_OUTCOMES, OUTCOMES, MetricsError

WHO = ("agent", "team", "site")
WHEN = ("day", "hour", "month")
FLOOR_BY = WHO + WHEN


def parse_by(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    parts = tuple(part.strip() for part in text.split(","))
    who = [p for p in parts if p in WHO]
    when = [p for p in parts if p in WHEN]
    if len(who) + len(when) != len(parts) or len(who) > 1 or len(when) > 1:
        raise MetricsError(
            f"--by over PostgreSQL is one of {', '.join(FLOOR_BY)}, or one of {'/'.join(WHO)} with one of"
            f" {'/'.join(WHEN)} (e.g. team,day), not {text!r}"
        )
    return (*who, *when)


@dataclass(frozen=True)
class FloorQuery(R.ReportQuery):
    """A ReportQuery whose ``by`` may also be a floor grouping (site, team, month, or a pair), and
    which may keep to one site or one team (the desk's team now)."""

    site: str | None = None
    team: str | None = None

    def __post_init__(self) -> None:
        parse_by(self.by)
        if self.since and self.until and self.since > self.until:
            raise MetricsError(f"--since {self.since} is after --until {self.until}")


# A group key's SQL; "hour" also needs its parts to sort (DST: of two equal local hours the one
# with the larger UTC offset came first, as in report.py).
_KEY_SQL = {
    "agent": ["c.agent", "c.store_id"],
    "team": ["coalesce(d.team, '')"],
    "site": ["c.site"],
    "day": ["c.local_day"],
    "month": ["to_char(c.local_day, 'YYYY-MM')"],
    "hour": ["c.local_day", "substr(c.local_start, 12, 2)", "right(c.local_start, 6)"],
}
_HANDLED_SQL = "c.outcome IN (" + ", ".join(f"'{o}'" for o in HANDLED_OUTCOMES) + ")"
_MS = {name: f"round(coalesce(c.{name}_s, 0) * 1000)" for name in ("ring", "talk", "hold", "wrap")}


def _figure_sql(name: str) -> str:
    """One analytics figure ("quality.clipping_pct": a nested one) as float8; a JSON null is SQL NULL."""
    return f"(c.analytics #>> '{{{name.replace('.', ',')}}}')::float8"


# Conversation analytics as report.py's _analytics_sums has them: the calls with figures (migration 6),
# then each of ANALYTICS_MEANS' sum and count of values (sum() and count() skip NULLs: never a zero).
_ANALYTICS_SQL = [
    "count(*) FILTER (WHERE c.analytics IS NOT NULL)",
    *(
        part
        for name in R.ANALYTICS_MEANS
        for part in (f"coalesce(sum({_figure_sql(name)}), 0)", f"count({_figure_sql(name)})")
    ),
]


def sql(query: FloorQuery) -> tuple[str, list[Any], int]:
    """The report's one statement, its parameters, and how many key columns lead each row."""
    by = parse_by(query.by)
    keys = [expr for name in by for expr in _KEY_SQL[name]]
    where, params = _where(query)
    outcomes = [f"count(*) FILTER (WHERE c.outcome = '{o}')" for o in OUTCOMES]
    spreads = []
    for name in ("ring", "talk", "hold", "wrap"):
        ms = _MS[name]
        spreads += [
            f"avg({ms}) FILTER (WHERE {_HANDLED_SQL})",
            f"percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY {ms}) FILTER (WHERE {_HANDLED_SQL})",
        ]
    sums = [f"sum({_MS[n]}) FILTER (WHERE {_HANDLED_SQL})" for n in ("talk", "hold", "wrap")]
    sums += [f"sum(c.{n}) FILTER (WHERE {_HANDLED_SQL})" for n in ("holds", "long_holds")]
    columns = [f"{k} AS k{i}" for i, k in enumerate(keys)]
    columns += [f"count(*) FILTER (WHERE {_HANDLED_SQL})", *outcomes, *spreads, *sums]
    columns += _ANALYTICS_SQL
    columns += ["min(c.local_day)", "max(c.local_day)"]
    text = f"SELECT {', '.join(columns)} FROM calls c{_join(query)} WHERE {' AND '.join(where)}{_group(keys)}"
    return text, params, len(keys)


def _where(query: FloorQuery) -> tuple[list[str], list[Any]]:
    """The query's filters over ``c`` (calls or call_rollups: the same names) and ``d`` (desks)."""
    where: list[str] = ["true"]
    params: list[Any] = []
    for clause, value in (
        ("c.local_day >= %s", query.since),
        ("c.local_day <= %s", query.until),
        ("c.agent = %s", query.agent),
        ("c.site = %s", query.site),
        ("coalesce(d.team, '') = %s", query.team),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    return where, params


def _join(query: FloorQuery) -> str:
    team = "team" in parse_by(query.by) or query.team is not None
    return " LEFT JOIN desks d ON d.site = c.site AND d.desk = c.desk" if team else ""


def _group(keys: list[str]) -> str:
    return f" GROUP BY GROUPING SETS (({', '.join(f'k{i}' for i in range(len(keys)))}), ())" if keys else ""


# ---------------------------------------------------------------- from the rollups
#
# call_rollups (pgstore, migration 7) holds per store, day and agent what sql() takes from the calls:
# counts, sums and every handled call's timing in whole ms. The counts and sums are added in SQL;
# the medians and 90th percentiles are taken in numpy from the timings of each group's rows, by
# PostgreSQL's own percentile_cont rule (below), so every figure equals sql()'s. By hour reads the
# calls (a rollup's grain is the day).
_P = (0.5, 0.9)
_ROLLUP_SUMS = (
    ["coalesce(sum(c.handled), 0)", *(f"coalesce(sum(c.{o}), 0)" for o in OUTCOMES)]
    + [f"sum(c.{t}_sum)" for t in pgstore.TIMINGS]
    + ["sum(c.holds)", "sum(c.long_holds)", "min(c.local_day)", "max(c.local_day)"]
)


def _percentiles(values: np.ndarray) -> list[float] | None:
    """percentile_cont(ARRAY[0.5, 0.9]) as PostgreSQL computes it (orderedsetaggs.c): the rows at
    floor and ceil of p * (n - 1), lo + (hi - lo) * fraction; None over no rows."""
    n = len(values)
    if n == 0:
        return None
    ranks = [(math.floor(p * (n - 1)), math.ceil(p * (n - 1)), p * (n - 1) - math.floor(p * (n - 1))) for p in _P]
    picked = np.partition(values, sorted({r for lo, hi, _ in ranks for r in (lo, hi)}))
    out = []
    for lo, hi, fraction in ranks:
        low = float(picked[lo])
        out.append(low + (float(picked[hi]) - low) * fraction if hi > lo else low)
    return out


def _timings(narrow: bytes | None, wide: bytes | None) -> np.ndarray:
    """The timings (ms) packed in a rollup: big-endian int4s, then float8s for the few that are not."""
    values = np.frombuffer(narrow or b"", dtype=">i4").astype(np.int32)
    return np.concatenate([values.astype(np.float64), np.frombuffer(wide, dtype=">f8")]) if wide else values


ROLLUP_WORK_MEM = "64MB"  # a month of a site's rollups sorts in memory


def rollup_rows(conn: psycopg.Connection[Any], query: FloorQuery) -> tuple[list[tuple[Any, ...]], int]:
    """sql()'s result rows (keys, figures), built from call_rollups: one statement, each group's
    timings concatenated by PostgreSQL (read in binary), its percentiles here; the total row is the
    groups' sums and all their timings."""
    by = parse_by(query.by)
    if "hour" in by:
        raise MetricsError("a rollup has no hours")
    keys = [expr for name in by for expr in _KEY_SQL[name]]
    width = len(keys)
    where, params = _where(query)
    columns = [f"{k} AS k{i}" for i, k in enumerate(keys)] + _ROLLUP_SUMS
    columns += [f"string_agg(c.{t}_{kind}, ''::bytea)" for t in pgstore.TIMINGS for kind in ("ms", "wide")]
    columns += [f"coalesce(sum(c.analytics[{i + 1}]), 0)" for i in range(len(_ANALYTICS_SQL))]
    group = f" GROUP BY {', '.join(f'k{i}' for i in range(width))}" if keys else ""
    text = f"SELECT {', '.join(columns)} FROM call_rollups c{_join(query)} WHERE {' AND '.join(where)}{group}"
    conn.execute("SELECT set_config('work_mem', %s, true)", (ROLLUP_WORK_MEM,))
    with conn.cursor(binary=True) as cur:
        found = [(tuple(row[:width]), row[width:]) for row in cur.execute(text, params)]
    if width == 0:
        return [_rollup_row((), figures, None) for _, figures in found], 0
    out = []
    everything: list[list[np.ndarray]] = [[] for _ in pgstore.TIMINGS]
    for key, figures in found:
        timings = [_timings(figures[14 + 2 * i], figures[15 + 2 * i]) for i in range(len(pgstore.TIMINGS))]
        for mine, values in zip(everything, timings, strict=True):
            mine.append(values)
        out.append(_rollup_row(key, figures, timings))
    total: list[Any] = [sum(figures[n] for _, figures in found) for n in range(12)]
    days = [figures[n] for _, figures in found for n in (12, 13)]
    total += [min(days), max(days)] if days else [None, None]
    total += [None] * 8
    total += [sum(figures[22 + n] for _, figures in found) for n in range(len(_ANALYTICS_SQL))]
    timings = [np.concatenate(parts) if parts else np.zeros(0, np.int32) for parts in everything]
    out.append(_rollup_row((None,) * width, total, timings))
    return out, width


def _rollup_row(key: tuple[Any, ...], figures: Any, timings: list[np.ndarray] | None) -> tuple[Any, ...]:
    """sql()'s row from a rollup statement's (its timings unpacked, or packed in ``figures``)."""
    if timings is None:
        timings = [_timings(figures[14 + 2 * i], figures[15 + 2 * i]) for i in range(len(pgstore.TIMINGS))]
    handled, counts, timing_sums = figures[0], figures[1 : 1 + len(OUTCOMES)], figures[6:10]
    holds, long_holds, first, last = figures[10:14]
    spreads: list[Any] = []
    for i, values in enumerate(timings):
        spreads += [float(timing_sums[i]) / int(handled) if handled else None, _percentiles(values)]
    talk_hold_wrap = timing_sums[1:4] if handled else (None, None, None)
    analytics = figures[22 : 22 + len(_ANALYTICS_SQL)]
    return (*key, handled, *counts, *spreads, *talk_hold_wrap, holds, long_holds, *analytics, first, last)


def build(conn: psycopg.Connection[Any], query: FloorQuery, *, rollups: bool = True) -> R.Report:
    """The report, from call_rollups where the grouping allows (not by hour), else from the calls."""
    by = parse_by(query.by)
    if rollups and "hour" not in by:
        rows, width = rollup_rows(conn, query)
    else:
        text, params, width = sql(query)
        rows = conn.execute(text, params).fetchall()
    total_row = next((row for row in rows if width == 0 or all(v is None for v in row[:width])), None)
    groups = [row for row in rows if row is not total_row and (row[0] is not None or width == 0)]
    groups.sort(key=lambda row: tuple(row[:width]))  # an agent's stores in id order, whatever the plan
    stores_of: dict[str, list[str]] = {}
    if "agent" in by:
        for row in groups:
            if row[1] not in stores_of.setdefault(row[0], []):
                stores_of[row[0]].append(row[1])
    elif query.agent is not None:
        table = "call_rollups" if rollups else "calls"
        stores = conn.execute(
            f"SELECT DISTINCT store_id FROM {table} WHERE agent = %s ORDER BY 1", (query.agent,)
        ).fetchall()
        stores_of[query.agent] = [s for (s,) in stores]
    labels, warnings = R._agent_labels(stores_of, query)
    named = sorted(((_name_and_order(row[:width], by, labels), row[width:]) for row in groups), key=lambda x: x[0][1])
    total = _figures([R.TOTAL], [total_row[width:]] if total_row else []).rows()[0]
    days = [d for row in ([total_row[width:]] if total_row else []) for d in row[-2:] if d is not None]
    report = R.Report(
        query,
        total,
        np.zeros(0, dtype=np.int32),
        agents=sorted({label for of in labels.values() for label in of.values()}),
        first_day=min(days).isoformat() if days else None,
        last_day=max(days).isoformat() if days else None,
        warnings=warnings,
    )
    if by:
        report.figures = _figures([name for (name, _), _ in named], [values for _, values in named])
    return report


def _name_and_order(key: tuple[Any, ...], by: tuple[str, ...], labels: dict[str, dict[str, str]]) -> tuple[str, Any]:
    names: list[str] = []
    order: list[Any] = []
    i = 0
    for part in by:
        if part == "agent":
            label = labels[key[i]][key[i + 1]]
            names.append(label)
            order += [label, key[i + 1]]
            i += 2
        elif part == "hour":
            day, hour, offset = key[i], key[i + 1], key[i + 2]
            names.append(f"{day.isoformat()}T{hour}:00{offset}")
            minutes = (int(offset[1:3]) * 60 + int(offset[4:6])) * (-1 if offset[0] == "-" else 1)
            order += [day, int(hour), -minutes]
            i += 3
        else:
            value = key[i]
            names.append(value.isoformat() if hasattr(value, "isoformat") else str(value))
            order.append(names[-1])
            i += 1
    return " ".join(names), tuple(order)


def _figures(names: list[str], rows: list[tuple[Any, ...]]) -> Any:
    """report.py's _Figures from the SQL rows (one per group): the same columns, the same rounding."""
    n = len(names)
    sizes = np.array([int(r[0]) for r in rows] or [0] * n, dtype=np.int64)
    counts = np.array([[int(v) for v in r[1 : 1 + len(OUTCOMES)]] for r in rows] or [[0] * len(OUTCOMES)] * n)
    spreads = []
    base = 1 + len(OUTCOMES)
    for s in range(4):
        means = np.array([float(r[base + 2 * s] or 0) / 1000.0 for r in rows] or [0.0] * n)
        quantiles = [r[base + 2 * s + 1] or [0.0, 0.0] for r in rows] or [[0.0, 0.0]] * n
        medians = np.array([float(q[0]) / 1000.0 for q in quantiles])
        p90s = np.array([float(q[1]) / 1000.0 for q in quantiles])
        spreads.append([means, medians, p90s])
    at = base + 8
    totals = np.array([[float(v or 0) for v in r[at : at + 5]] for r in rows] or [[0.0] * 5] * n, dtype=np.float64)
    figures = R._Figures(names, counts.reshape(n, len(OUTCOMES)), sizes, spreads, totals.reshape(n, 5))
    at += 5
    width = len(_ANALYTICS_SQL)
    analytics = np.array([[float(v) for v in r[at : at + width]] for r in rows] or [[0.0] * width] * n)
    figures.analytics = analytics.reshape(n, width)  # no groups: still two dimensions
    return figures
