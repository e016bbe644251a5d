"""The `offhook` console script: --version, --help, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from offhook import __version__, linkproto

OFFHOOK = Path(sys.executable).with_name("offhook")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OFFHOOK, *args], capture_output=True, text=True, input=stdin, timeout=60)


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"offhook {__version__}"


def test_help_lists_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "link" in result.stdout


def test_unknown_command_is_usage_error() -> None:
    result = run("no-such-command")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_link_decode_json() -> None:
    wire = linkproto.encode_frame(linkproto.EVENT, 7, linkproto.encode_event(1, 2, 99), 1)
    result = run("link", "decode", "--json", wire.hex())
    assert result.returncode == 0
    decoded = json.loads(result.stdout)
    assert decoded["type"] == "EVENT" and decoded["seq"] == 7
    assert decoded["fields"] == {"button": 1, "gesture": 2, "unit_ms": 99}


def test_link_decode_reports_bad_frames() -> None:
    result = run("link", "decode", stdin="01 02 03")
    assert result.returncode == 1
    assert "error:" in result.stdout


def test_link_decode_rejects_non_hex() -> None:
    result = run("link", "decode", "zz")
    assert result.returncode == 2
    assert result.stderr.startswith("offhook: error: not hex bytes")


def test_python_dash_m_gives_the_same_one_line_error() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "offhook.cli", "report", "--by", "week"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr == "offhook: error: --by must be day, hour or agent, not 'week'\n"
