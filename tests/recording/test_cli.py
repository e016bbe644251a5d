"""`offhook recordings list | decrypt | purge` and the [recording] config section."""

from __future__ import annotations

import json
import os
import time

import pytest

from offhook import config
from offhook.cli import main
from offhook.recording import meta as M
from offhook.recording.writer import Recorder
from tests.recording.conftest import FRAME


def make(directory, recipient, talkers, call_id="c1", frames=100, clock=time.time):
    rec = Recorder(directory, recipient, call_id, "ann", queue_frames=10_000, clock=clock)
    assert rec.start()
    for i in range(frames):
        part = slice(i * FRAME, (i + 1) * FRAME)
        rec.push(talkers[0][part], talkers[1][part])
    rec.close()
    return rec


def test_list_decrypt_purge(tmp_path, keys, talkers, capsys):
    recipient, identity = keys
    rec_dir = tmp_path / "rec"
    old = make(rec_dir, recipient, talkers, "old-call", clock=lambda: time.time() - 100 * 86400)
    new = make(rec_dir, recipient, talkers, "new-call")
    assert main(["recordings", "list", "--dir", str(rec_dir), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["recordings"]
    assert [r["call_id"] for r in listed] == ["old-call", "new-call"]
    assert listed[1]["status"] == "complete" and listed[1]["bytes"] > 0 and listed[1]["duration_s"] == 1.0
    assert main(["recordings", "list", "--dir", str(rec_dir)]) == 0
    assert "new-call" in capsys.readouterr().out

    out = tmp_path / "new.ogg"
    assert (
        main(["recordings", "decrypt", str(new.audio_path), "--identity", str(identity), "-o", str(out), "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["bytes"] == out.stat().st_size
    # Never overwritten: exit 1, one line.
    assert main(["recordings", "decrypt", str(new.audio_path), "-i", str(identity), "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err

    assert main(["recordings", "purge", "--dir", str(rec_dir), "--days", "30", "--dry-run", "--json"]) == 0
    assert [r["call_id"] for r in json.loads(capsys.readouterr().out)["removed"]] == ["old-call"]
    assert old.audio_path.exists()
    assert main(["recordings", "purge", "--dir", str(rec_dir), "--days", "30"]) == 0
    assert not old.audio_path.exists() and not old.meta_path.exists() and new.audio_path.exists()


def test_bad_input_is_one_line_exit_2(tmp_path, keys, capsys):
    assert main(["recordings", "decrypt", str(tmp_path / "missing.ogg.age"), "-i", str(keys[1])]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["recordings", "purge", "--dir", str(tmp_path), "--days", "0"]) == 2
    plain = tmp_path / "x.ogg"
    plain.write_bytes(b"OggS")
    assert main(["recordings", "decrypt", str(plain), "-i", str(keys[1])]) == 2


def test_bad_identity_file(tmp_path, keys, talkers, capsys):
    rec = make(tmp_path / "rec", keys[0], talkers)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key\n")
    out = tmp_path / "o.ogg"
    assert main(["recordings", "decrypt", str(rec.audio_path), "-i", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not an age identity file" in err and err.count("\n") == 1 and not out.exists()


def test_list_skips_foreign_sidecars(tmp_path, keys, talkers, capsys):
    make(tmp_path, keys[0], talkers)
    (tmp_path / "other.json").write_text('{"format": 1, "audio": "../../etc/passwd"}')
    assert main(["recordings", "list", "--dir", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)["recordings"]) == 1 and "other.json" in captured.err


def test_config_section(keys):
    recipient, _ = keys
    assert config.defaults()["recording"] == {"enabled": False, "directory": "", "retention_days": 90, "recipient": ""}
    ok = config.validate({"recording": {"enabled": True, "recipient": recipient, "retention_days": 30}})
    assert ok["recording"]["enabled"]
    with pytest.raises(config.ConfigError, match=r"recording\.recipient is needed"):
        config.validate({"recording": {"enabled": True}})
    with pytest.raises(config.ConfigError, match=r"recording\.recipient is not usable"):
        config.validate({"recording": {"recipient": "AGE-SECRET-KEY-1QQQ"}})
    with pytest.raises(config.ConfigError, match="retention_days = 0 is below"):
        config.validate({"recording": {"retention_days": 0}})


def test_sidecar_is_private_and_atomic(tmp_path, keys, talkers):
    rec = make(tmp_path, keys[0], talkers)
    assert oct(rec.meta_path.stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob("*.tmp"))
    assert M.read(rec.meta_path).audio == rec.audio_path.name
    assert os.path.dirname(M.read(rec.meta_path).audio) == ""
