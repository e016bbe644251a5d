"""`offhook central config`: values typed as written, bad input refused in one line (exit 2) before
any database is reached."""

from __future__ import annotations

import math

import pytest

from offhook.cli import main
from offhook.commands.central import parse_value


def test_values_are_typed_as_written() -> None:
    assert parse_value("60") == 60 and isinstance(parse_value("60"), int)
    assert parse_value("2.5") == 2.5 and math.isnan(parse_value("nan"))
    assert parse_value("true") is True and parse_value('["hook","mute"]') == ["hook", "mute"]
    assert parse_value("sip:lead@pbx") == "sip:lead@pbx"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "--team", "complaints", "wrap_up_s"], "must be KEY=VALUE"),
        (["set", "--team", "complaints", "wrap_up_s=nan"], "timers.wrap_up_s = nan is not a finite number"),
        (["set", "--team", "complaints", "coffee_s=1"], "unknown key 'coffee_s'"),
        (["set", "--desk", "desk-01", "--lock", "wrap_up_s=5"], "only a site or a team may lock"),
        (["set", "--team", "complaints", "button_map=[1"], "is not valid JSON"),
        (["set", "--site", "hq", "brightness=0"], "brightness=0 out of range 1..100"),
    ],
)
def test_bad_input_is_refused_before_the_database(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["central", "config", *args, "--db", "host=/nonexistent dbname=none"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_layer_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["central", "config", "set", "wrap_up_s=5"])
    assert done.value.code == 2
