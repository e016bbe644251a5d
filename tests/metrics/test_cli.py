"""`offhook report`, `offhook metrics export|purge`: output formats, charts, bad input (exit 2, one line)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from offhook.cli import main
from offhook.metrics.store import CallRecorder
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
