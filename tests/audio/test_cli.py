"""`offhook audio process`: files in, cleaned file out; one-line errors and exit 2 on bad input."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from scipy.signal import fftconvolve

from offhook.audio.wavio import read_wav, write_wav
from offhook.cli import main
from tests.bench.audio.scenes import RATE, pink_noise


@pytest.fixture
def files(tmp_path, far_speech, office_rirs):
    far = far_speech[: 6 * RATE]
    echo = 0.3 * np.concatenate((np.zeros(800), fftconvolve(far, office_rirs[0])[: len(far) - 800]))
    noise = pink_noise(len(far), np.random.default_rng(1))
    mic = echo + noise * np.std(echo) / 10**1.5 / np.std(noise)
    write_wav(tmp_path / "mic.wav", mic, RATE)
    write_wav(tmp_path / "ref.wav", far, RATE)
    return tmp_path


def test_process_cancels_echo(files):
    out = files / "out.wav"
    assert main(["audio", "process", str(files / "mic.wav"), str(files / "ref.wav"), str(out), "--no-gate"]) == 0
    cleaned, rate = read_wav(out)
    mic, _ = read_wav(files / "mic.wav")
    assert rate == RATE and len(cleaned) == len(mic)
    tail = slice(3 * RATE, 6 * RATE)
    assert 10 * np.log10(np.sum(mic[tail] ** 2) / np.sum(cleaned[tail] ** 2)) > 20.0


def test_every_stage_off_is_a_passthrough(files):
    out = files / "out.wav"
    args = [str(files / "mic.wav"), str(files / "ref.wav"), str(out), "--no-aec", "--no-gate", "--no-ns"]
    args.append("--no-highpass")
    assert main(["audio", "process", *args]) == 0
    assert np.array_equal(read_wav(out)[0], read_wav(files / "mic.wav")[0])


def _write(path, samples, rate=RATE, channels=1, width=2):
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(np.zeros(len(samples) * channels * width, dtype=np.uint8).tobytes())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: _write(p, np.zeros(RATE * 6), rate=48000), "sample rates differ"),
        (lambda p: _write(p, np.zeros(100)), "lengths differ"),
        (lambda p: _write(p, np.zeros(RATE * 6), channels=2), "expected mono"),
        (lambda p: _write(p, np.zeros(RATE * 6), width=3), "expected 16-bit"),
        (lambda p: _write(p, np.zeros(RATE * 6), rate=22050), "expected 16000 or 48000"),
        (lambda p: p.write_bytes(b"RIFF not really"), "not a readable WAV"),
    ],
)
def test_bad_input_is_a_one_line_error(files, capsys, make, message):
    bad = files / "bad.wav"
    make(bad)
    code = main(["audio", "process", str(files / "mic.wav"), str(bad), str(files / "out.wav")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not (files / "out.wav").exists()


def test_missing_file(files, capsys):
    assert main(["audio", "process", str(files / "nope.wav"), str(files / "ref.wav"), str(files / "o.wav")]) == 2
    assert "no such file" in capsys.readouterr().err
