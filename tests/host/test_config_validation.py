"""Config values that used to pass validation and then broke the daemon later (issue 18, item 5).

Each bad value is a one-line ConfigError naming the file and the key, raised at load time;
`offhook daemon` turns it into exit 2 with one line on stderr and no traceback.
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from offhook import cli, config


def _load_text(tmp_path: Path, text: str) -> dict[str, dict[str, Any]]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return config.load(path)


@pytest.mark.parametrize("key", ["wrap_up_s", "wrap_up_extend_s", "ring_timeout_s", "hold_reminder_s"])
@pytest.mark.parametrize("value", ["nan", "-nan", "+nan"])
def test_nan_timer_is_refused(tmp_path: Path, key: str, value: str) -> None:
    # NaN compares false with both bounds, so the range check alone let it through.
    with pytest.raises(config.ConfigError, match=f"timers.{key} = nan is not a finite number"):
        _load_text(tmp_path, f"[timers]\n{key} = {value}\n")


@pytest.mark.parametrize(
    ("section", "key"),
    [("softphone", "consult_timeout_s"), ("timers", "mute_confirm_timeout_s"), ("timers", "wrap_up_s")],
)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_must_be_finite(section: str, key: str, value: float) -> None:
    with pytest.raises(config.ConfigError, match=f"{section}.{key} = .* is not a finite number"):
        config.validate({section: {key: value}})


@pytest.mark.parametrize("zone", ["Mars/Olympus", "Europe", "/etc/localtime", "../etc/passwd", "europe/berlin", " UTC"])
def test_unknown_time_zone_is_refused(tmp_path: Path, zone: str) -> None:
    with pytest.raises(config.ConfigError, match=r"agent\.timezone = .* is not a known IANA time zone"):
        _load_text(tmp_path, f"[agent]\ntimezone = {zone!r}\n")


@pytest.mark.parametrize("zone", ["", "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires"])
def test_known_time_zones_and_the_pcs_own_are_accepted(zone: str) -> None:
    assert config.validate({"agent": {"timezone": zone}})["agent"]["timezone"] == zone


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:99999", "port 99999 is not 1..65535"),
        ("127.0.0.1:0", "port 0 is not 1..65535"),
        ("localhost:65536", "port 65536 is not 1..65535"),
        ("127.0.0.1:", "must be a loopback HOST:PORT"),
        ("127.0.0.1:-1", "must be a loopback HOST:PORT"),
        ("127.0.0.1:\u0664\u0664\u0664\u0664", "must be a loopback HOST:PORT"),  # Arabic-Indic digits
        ("127.0.0.1", "must be a loopback HOST:PORT"),
        ("[::1]:4444", "must be a loopback HOST:PORT"),
    ],
)
def test_baresip_ctrl_port_is_checked(address: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=f"softphone.baresip_ctrl .*{message}"):
        config.validate({"softphone": {"baresip_ctrl": address}})


@pytest.mark.parametrize("address", ["127.0.0.1:1", "localhost:4444", "::1:65535"])
def test_good_baresip_ctrl_addresses(address: str) -> None:
    assert config.validate({"softphone": {"baresip_ctrl": address}})["softphone"]["baresip_ctrl"] == address


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"softphone": {"hid_softphone": 1}}, "softphone.hid_softphone must be a boolean, not int 1"),
        ({"api": {"port": 8677.0}}, "api.port must be a number, not float"),
        ({"api": {"port": -1}}, "api.port = -1 is below the minimum"),
        ({"timers": {"ring_timeout_s": -5}}, "timers.ring_timeout_s = -5 is below the minimum"),
        ({"agent": {"name": "alice\nbob"}}, "agent.name must not contain control characters"),
        ({"unit": {"port": "/dev/ttyACM0\x00"}}, "unit.port must not contain control characters"),
        ({"softphone": {"supervisor": "sip:"}}, "softphone.supervisor must be a sip: URI"),
        ({"softphone": {"supervisor": "sip:sup @pbx"}}, "softphone.supervisor must be a sip: URI"),
        ({"api": {"allowed_origins": ["https://"]}}, "must look like https://host"),
        ({"api": {"allowed_origins": ["https://crm.example.com:99999"]}}, "must look like https://host"),
        ({"api": {"allowed_origins": ["https://user@crm.example.com"]}}, "must look like https://host"),
        ({"api": {"allowed_origins": ["https://crm.example.com?x"]}}, "must look like https://host"),
        # Browsers send the origin lower-case and without the scheme's default port: these never match.
        ({"api": {"allowed_origins": ["https://CRM.example.com"]}}, "'https://crm.example.com'"),
        ({"api": {"allowed_origins": ["https://crm.example.com:443"]}}, "'https://crm.example.com'"),
    ],
)
def test_same_class_of_holes_in_other_values(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(config.ConfigError, match=r"^config: ") as error:
        config.validate(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("origin", ["https://crm.example.com", "http://localhost:3000", "http://[::1]:8080"])
def test_good_origins(origin: str) -> None:
    assert config.validate({"api": {"allowed_origins": [origin]}})["api"]["allowed_origins"] == [origin]


def test_named_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match=r"nosuch\.toml: no such file"):
        config.load(tmp_path / "nosuch.toml", required=True)
    assert config.load(tmp_path / "nosuch.toml") == config.defaults()  # the default path may be missing


def test_directory_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="is a directory, not a config file"):
        config.load(tmp_path)


def test_unreadable_file_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[timers]\nwrap_up_s = 45\n")
    real_open = os.open

    def refuse(file: Any, *args: Any, **kwargs: Any) -> int:
        if Path(file) == path:  # as chmod 000 does for anyone but root (the tests may run as root)
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(config.ConfigError, match=r"config\.toml: cannot read it: Permission denied$"):
        config.load(path)


def test_path_through_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(config.ConfigError, match="cannot read it: Not a directory"):
        config.load(tmp_path / "file" / "config.toml")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            config.load(fifo)
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(5)
    if reader.is_alive():  # blocked opening the FIFO: a writer releases it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(5)
        pytest.fail("loading a FIFO blocked")
    assert isinstance(outcome[0], config.ConfigError) and "not a regular file" in str(outcome[0])


def _daemon(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    from offhook.commands import daemon

    async def serve(config: dict[str, Any], local_settings: dict[str, Any]) -> int:  # never a real daemon
        print("the daemon started")
        return 0

    monkeypatch.setattr(daemon, "serve", serve)
    code = cli.main(["daemon", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    return code, err


def test_daemon_refuses_a_named_config_that_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _daemon(["--config", str(tmp_path / "nosuch.toml")], capsys, monkeypatch)
    assert code == cli.EXIT_USAGE
    assert err.startswith("offhook: error: ") and "nosuch.toml: no such file" in err


@pytest.mark.parametrize("kind", ["directory", "unreadable", "nan", "zone", "ctrl_port"])
def test_daemon_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = tmp_path / "config.toml"
    text = {
        "nan": "[timers]\nhold_reminder_s = nan\n",
        "zone": "[agent]\ntimezone = 'Mars/Olympus'\n",
        "ctrl_port": "[softphone]\nbaresip_ctrl = '127.0.0.1:99999'\n",
    }.get(kind, "")
    if kind == "directory":
        path.mkdir()
    else:
        path.write_text(text)
    if kind == "unreadable":
        real_open = os.open

        def refuse(file: Any, *args: Any, **kwargs: Any) -> int:
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(os, "open", refuse)
    code, err = _daemon(["--config", str(path)], capsys, monkeypatch)
    assert code == cli.EXIT_USAGE
    assert err.startswith(f"offhook: error: {path}")


def test_daemon_port_option_follows_the_same_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, err = _daemon(["--config", str(tmp_path / "nosuch.toml"), "--port", "/dev/ttyACM0"], capsys, monkeypatch)
    assert code == cli.EXIT_USAGE and "no such file" in err  # the config is read first
    (tmp_path / "config.toml").write_text("")
    code, err = _daemon(["--config", str(tmp_path / "config.toml"), "--port", "/dev/tty\nACM0"], capsys, monkeypatch)
    assert code == cli.EXIT_USAGE
    assert err == "offhook: error: --port: unit.port must not contain control characters\n"
