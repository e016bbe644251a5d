"""PNG charts for supervisors (matplotlib, Agg backend: no display, works on a server).

One figure, two panels: the AHT breakdown per day as stacked bars (mean talk, hold and
wrap-up of handled calls, so each bar's height is that day's AHT), and the ring-time
distribution (speed of answer) of the handled calls as a histogram with the median and
90th percentile marked. The figure's title states the dates and the agents it covers (a
PNG travels without its command line); each legend sits right of its panel, outside the
axes, so it never hides a bar. matplotlib is imported here only, so other commands stay fast.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from offhook.metrics.report import Report, printable

_AGENT_LINES = 3  # of agent names in the title; more agents are counted, not named
_TITLE_WIDTH = 110  # characters per title line at the figure's width


def preload() -> None:
    """Import matplotlib with the Agg backend (no display needed); about half a second."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


# Right of the axes, top-aligned: constrained layout narrows the axes to make room.
_OUTSIDE = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "borderaxespad": 0.0}


def title(report: Report) -> str:
    """What the chart covers: its dates and its agents, safe for matplotlib's text (no mathtext, no controls)."""
    query = report.query
    agents = [printable(agent) for agent in report.agents or ([query.agent] if query.agent is not None else [])]
    lines = [f"Call metrics, {report.period()}", *_named(agents)]
    return "\n".join(line.replace("$", r"\$") for line in lines)  # a lone $ would start mathtext and fail


def _named(agents: list[str]) -> list[str]:
    """The agents in at most _AGENT_LINES lines: as many names as fit, then how many more."""
    if not agents:
        return ["no agents"]
    prefix = "agent: " if len(agents) == 1 else f"{len(agents)} agents: "
    shown = min(len(agents), 100)
    while True:
        rest = len(agents) - shown
        lines = textwrap.wrap(prefix + ", ".join(agents[:shown]) + (f" and {rest} more" if rest else ""), _TITLE_WIDTH)
        if len(lines) <= _AGENT_LINES or shown == 1:
            return lines[:_AGENT_LINES]
        shown -= 1


def write_chart(by_day: Report, path: Path) -> None:
    """Render ``by_day`` (a report grouped by day) to ``path`` as PNG."""
    preload()
    from matplotlib import pyplot as plt

    days = [row for row in by_day.rows if row.handled]
    figure, (bars, histogram) = plt.subplots(2, 1, figsize=(10, 8), constrained_layout=True)
    try:
        labels = [row.group for row in days]
        x = np.arange(len(days))
        bottom = np.zeros(len(days))
        for name, colour in (("talk", "#4c72b0"), ("hold", "#dd8452"), ("wrap", "#55a868")):
            minutes = np.array([(getattr(row, name).mean or 0.0) / 60.0 for row in days])
            label = "wrap-up" if name == "wrap" else name
            if len(days) <= 62:
                bars.bar(x, minutes, bottom=bottom, color=colour, label=label)
            else:  # a year of days: one artist per layer instead of hundreds of rectangles
                edges = np.arange(len(days) + 1) - 0.5
                bars.stairs(bottom + minutes, edges, baseline=bottom.copy(), fill=True, color=colour, label=label)
            bottom += minutes
        figure.suptitle(title(by_day))
        bars.set_title("Average handling time per day (mean of handled calls)")
        bars.set_ylabel("minutes")
        step = max(1, len(labels) // 15)
        bars.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
        bars.legend(**_OUTSIDE)
        if not days:
            bars.text(0.5, 0.5, "no handled calls", transform=bars.transAxes, ha="center")

        ring = by_day.ring_ms / 1000.0
        if ring.size:
            histogram.hist(ring, bins=min(60, max(10, int(np.sqrt(ring.size)))), color="#8172b3")
            median, p90 = np.percentile(ring, [50, 90])
            histogram.axvline(median, color="black", linestyle="--", label=f"median {median:.1f} s")
            histogram.axvline(p90, color="#c44e52", linestyle=":", label=f"90th percentile {p90:.1f} s")
            histogram.legend(**_OUTSIDE)
        else:
            histogram.text(0.5, 0.5, "no handled calls", transform=histogram.transAxes, ha="center")
        histogram.set_title("Ring time (speed of answer) of handled calls")
        histogram.set_xlabel("seconds from ring start to answer")
        histogram.set_ylabel("calls")
        figure.savefig(path, format="png", dpi=100)
    finally:
        plt.close(figure)


def quality_chart_path(path: Path) -> Path:
    """Where the quality lead's chart goes beside ``--chart FILE.png``: FILE-quality.png."""
    return path.with_name(f"{path.stem}-quality{path.suffix}")


def write_quality_chart(by_day: Report, shares: dict[str, np.ndarray], path: Path) -> None:
    """The conversation figures a quality lead looks at (docs/analytics.md), three panels: each agent's
    talk share per call (a box per agent: the spread, not only the mean), dead air and overtalk per
    metered call per day, and hold check-in compliance per day. Days without a metered call (or without
    a hold) have no point: a gap, never a zero."""
    from offhook.metrics.report import ANALYTICS_MEANS

    preload()
    from matplotlib import pyplot as plt

    def mean(row: Any, name: str) -> float:
        value = row.analytics[1 + ANALYTICS_MEANS.index(name)]
        return np.nan if value is None else float(value)

    days = by_day.rows
    labels = [row.group for row in days]
    x = np.arange(len(days))
    step = max(1, len(labels) // 15)
    figure, (spread, per_call, checkins) = plt.subplots(3, 1, figsize=(10, 11), constrained_layout=True)
    try:
        figure.suptitle(title(by_day))
        agents = [agent for agent in sorted(shares) if shares[agent].size]
        if agents:
            spread.boxplot([shares[agent] * 100 for agent in agents], showmeans=True)
            spread.set_xticks(np.arange(1, len(agents) + 1), [printable(a).replace("$", r"\$") for a in agents])
            spread.axhline(50, color="grey", linewidth=0.8, linestyle=":")
        else:
            spread.text(0.5, 0.5, "no metered calls", transform=spread.transAxes, ha="center")
        spread.set_title("Agent's share of the talk per call (box: middle half; whiskers: 1.5 IQR; triangle: mean)")
        spread.set_ylabel("% of the talk")
        for name, colour, label in (("dead_air_s", "#c44e52", "dead air"), ("overtalk_s", "#4c72b0", "overtalk")):
            per_call.plot(x, [mean(row, name) for row in days], marker="o", color=colour, label=label)
        per_call.set_title("Dead air and overtalk per metered call, per day (mean)")
        per_call.set_ylabel("seconds per call")
        per_call.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
        per_call.legend(**_OUTSIDE)
        rate = np.array([np.nan if r.checkin_compliance is None else 100 * r.checkin_compliance for r in days])
        checkins.bar(x, np.nan_to_num(rate), color=["#55a868" if v >= 100 else "#dd8452" for v in rate])
        for i, value in enumerate(rate.tolist()):  # a value on every bar: 0 % is a bar too, "no holds" is not
            text = "no holds" if np.isnan(value) else f"{value:.0f} %"
            colour = "grey" if np.isnan(value) else "black"
            checkins.text(i, 2, text, ha="center", rotation=90, fontsize=7, color=colour)
        checkins.set_ylim(0, 105)
        checkins.set_title("Holds checked on within the reminder (check-in compliance), per day")
        checkins.set_ylabel("% of holds")
        checkins.set_xticks(x[::step], labels[::step], rotation=45, ha="right")
        figure.savefig(path, format="png", dpi=100)
    finally:
        plt.close(figure)
