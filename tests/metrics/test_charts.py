"""`offhook report --chart`: what the PNG says (dates, agents) and that its legends hide no bar."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from offhook.cli import main
from offhook.metrics.store import CallRecorder
from tests.metrics.calls import play

START = datetime(2026, 3, 5, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each saved figure showed, read while it is drawn: its texts, legend and bar boxes (pixels)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    seen: list[dict[str, Any]] = []
    save = Figure.savefig

    def spy(figure: Figure, *args: Any, **kwargs: Any) -> None:
        save(figure, *args, **kwargs)
        renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
        panels = []
        for axes in figure.axes:
            legend = axes.get_legend()
            panels.append(
                {
                    "legend": None if legend is None else legend.get_window_extent(renderer),
                    "bars": [patch.get_window_extent(renderer) for patch in axes.patches],
                }
            )
        titles = [axes.get_title() for axes in figure.axes]
        suptitle = getattr(figure, "_suptitle", None)
        seen.append({"titles": [*titles, suptitle.get_text() if suptitle else ""], "panels": panels})

    monkeypatch.setattr(Figure, "savefig", spy)
    return seen


def overlap(a: Any, b: Any) -> float:
    """Area (px²) two boxes share."""
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, width) * max(0.0, height)


def record_days(days: int, agents: tuple[str, ...] = ("ann",)) -> None:
    """One handled call a day per agent; each day's wrap-up longer, so the last bar is the tallest."""
    with CallRecorder() as rec:
        for day in range(days):
            for agent in agents:
                events = [("answered", 5 + day % 7), ("hung_up", 65), ("wrap_up_ended", 65 + 30 * (day + 1))]
                play(rec, f"{agent}-{day}", START + timedelta(days=day), events, agent=agent)


@pytest.mark.parametrize("days", [5, 90])  # bars, and a quarter of days drawn as one filled step per layer
def test_legends_cover_no_bar(data_dir: Path, tmp_path: Path, drawn: list[dict[str, Any]], days: int) -> None:
    record_days(days)
    assert main(["report", "--by", "day", "--format", "json", "--chart", str(tmp_path / "c.png")]) == 0
    (figure,) = drawn
    legends = 0
    for panel in figure["panels"]:
        if panel["legend"] is None:
            continue
        legends += 1
        assert panel["bars"]
        for bar in panel["bars"]:
            assert overlap(panel["legend"], bar) < 1.0, (panel["legend"], bar)
    assert legends == 2


def test_chart_titles_state_dates_and_agents(data_dir: Path, tmp_path: Path, drawn: list[dict[str, Any]]) -> None:
    record_days(5, agents=("ann", "bob", "carol $5 [x]"))
    assert main(["report", "--format", "json", "--chart", str(tmp_path / "team.png")]) == 0
    assert (
        main(
            [
                "report",
                "--agent",
                "bob",
                "--since",
                "2026-03-06",
                "--format",
                "json",
                "--chart",
                str(tmp_path / "bob.png"),
            ]
        )
        == 0
    )
    team, bob = (" ".join(figure["titles"]) for figure in drawn)
    assert "2026-03-05" in team and "2026-03-09" in team
    assert "ann" in team and "bob" in team and "carol $5 [x]" in team.replace("\\$", "$")
    assert "2026-03-06" in bob and "2026-03-09" in bob and "bob" in bob and "ann" not in bob
