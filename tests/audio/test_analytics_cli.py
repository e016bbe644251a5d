"""`offhook audio analyze`: figures for a pair of recordings; bad input is one line on stderr, exit 2, no output."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
from scipy.signal import resample_poly

from offhook.audio.wavio import write_wav
from offhook.cli import main
from tests.audio import conversations
from tests.bench.audio import scenes

RATE = conversations.RATE


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if not scenes.have_espeak():
        pytest.skip("espeak-ng is not installed")
    conv = conversations.build(conversations.Spec(seed=2, turns=5, overlaps=1, pauses=1))
    path = tmp_path_factory.mktemp("analyze")
    write_wav(path / "mic.wav", conv.mic, RATE)
    write_wav(path / "ref.wav", conv.ref, RATE)
    write_wav(path / "mic48.wav", resample_poly(conv.mic, 3, 1), 3 * RATE)
    write_wav(path / "ref48.wav", resample_poly(conv.ref, 3, 1), 3 * RATE)
    return path, conv


def test_json_figures_of_a_scripted_call(pair, capsys):
    path, conv = pair
    assert main(["audio", "analyze", str(path / "mic.wav"), str(path / "ref.wav"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    truth = conv.truth()
    assert figures["connected_s"] == pytest.approx(len(conv.mic) / RATE, abs=0.01)
    assert figures["overtalk_count"] == truth.overtalk_count == 1
    assert figures["dead_air_count"] == truth.dead_air_count == 1
    for key in ("agent_talk_s", "customer_talk_s"):
        assert figures[key] == pytest.approx(getattr(truth, key), abs=0.02 * truth.connected_s)
    assert set(figures["quality"]) >= {"noise_floor_dbfs", "clipping_pct", "echo_reduction_db"}


def test_48k_gives_the_same_figures_and_text_output(pair, capsys):
    path, _ = pair
    assert main(["audio", "analyze", str(path / "mic.wav"), str(path / "ref.wav"), "--json"]) == 0
    at16 = json.loads(capsys.readouterr().out)
    assert main(["audio", "analyze", str(path / "mic48.wav"), str(path / "ref48.wav"), "--json"]) == 0
    at48 = json.loads(capsys.readouterr().out)
    assert at48["overtalk_count"] == at16["overtalk_count"] and at48["dead_air_count"] == at16["dead_air_count"]
    assert at48["agent_talk_s"] == pytest.approx(at16["agent_talk_s"], abs=0.3)
    assert at48["customer_talk_s"] == pytest.approx(at16["customer_talk_s"], abs=0.3)
    assert main(["audio", "analyze", str(path / "mic.wav"), str(path / "ref.wav")]) == 0
    text = capsys.readouterr().out
    assert "agent talk" in text and "dead air" in text and "mic noise floor" in text


def _write(path, seconds=2.0, rate=RATE, channels=1, width=2):
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(np.zeros(int(seconds * rate) * channels * width, dtype=np.uint8).tobytes())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _write(p, rate=48000), "sample rates differ"),
        (lambda p: _write(p, seconds=1.5), "lengths differ"),
        (lambda p: _write(p, channels=2), "expected mono"),
        (lambda p: _write(p, width=3), "expected 16-bit"),
        (lambda p: _write(p, rate=8000), "expected 16000 or 48000"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk"), "not a readable WAV"),
        (lambda p: None, "no such file"),
    ],
)
def test_bad_reference_is_refused_with_exit_2(tmp_path, capsys, make, message):
    _write(tmp_path / "mic.wav")
    make(tmp_path / "ref.wav")
    before = sorted(tmp_path.iterdir())
    assert main(["audio", "analyze", str(tmp_path / "mic.wav"), str(tmp_path / "ref.wav"), "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err and err.count("\n") == 1
    assert sorted(tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--overtalk-s", "0"], "--overtalk-s"),
        (["--dead-air-s", "nan"], "--dead-air-s"),
        (["--tail-ms", "5000"], "--tail-ms"),
    ],
)
def test_bad_options_and_too_short_recordings(tmp_path, capsys, args, message):
    _write(tmp_path / "mic.wav")
    _write(tmp_path / "ref.wav")
    assert main(["audio", "analyze", str(tmp_path / "mic.wav"), str(tmp_path / "ref.wav"), *args]) == 2
    out, err = capsys.readouterr()
    assert out == "" and message in err


def test_too_short_recording(tmp_path, capsys):
    _write(tmp_path / "mic.wav", seconds=0.5)
    _write(tmp_path / "ref.wav", seconds=0.5)
    assert main(["audio", "analyze", str(tmp_path / "mic.wav"), str(tmp_path / "ref.wav")]) == 2
    assert "at least 1 s" in capsys.readouterr().err
