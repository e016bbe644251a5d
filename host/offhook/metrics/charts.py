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
