"""Which I/O backend `offhook audio run` uses, and what it says when it cannot."""

from __future__ import annotations

import pytest

from offhook.audio.pulse import PulseError
from offhook.audio.realtime import Realtime, RealtimeConfig


@pytest.fixture
def no_server(tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_SERVER", f"unix:{tmp_path}/no-server-here")


def _engine(backend: str, tmp_path) -> Realtime:
    return Realtime(RealtimeConfig(setup_devices=False, backend=backend, control_socket=tmp_path / "audio.sock"))


def test_pulse_without_a_server_is_a_clear_error(no_server, tmp_path):
    engine = _engine("pulse", tmp_path)
    with pytest.raises(PulseError, match="PulseAudio connection"):
        engine.start()
    engine.stop()


def test_auto_falls_back_to_portaudio_and_says_so(no_server, tmp_path, monkeypatch):
    engine = _engine("auto", tmp_path)
    monkeypatch.setattr(engine, "_start_portaudio", lambda: setattr(engine.stats, "backend", "portaudio"))
    engine.start()
    engine.stop()
    assert engine.stats.backend == "portaudio"
    assert any("libpulse" in note for note in engine.stats.notes)


def test_an_unknown_backend_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown audio backend 'jack'"):
        _engine("jack", tmp_path).start()


def test_cli_run_reports_a_missing_server_in_one_line_and_exits_1(no_server, tmp_path, capsys):
    from offhook.cli import main

    code = main(["audio", "run", "--backend", "pulse", "--no-setup", "--seconds", "1"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("offhook: error: audio devices:") and "PulseAudio connection" in err
    assert err.count("\n") == 1


def test_cli_run_refuses_an_unknown_backend(capsys):
    from offhook.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["audio", "run", "--backend", "jack"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'jack'" in capsys.readouterr().err


def test_cli_run_refuses_a_queue_the_sink_cannot_hold(capsys):
    from offhook.cli import main

    assert main(["audio", "run", "--queue-ms", "2"]) == 2
    assert "--queue-ms 2: must be between 6 and 500" in capsys.readouterr().err
