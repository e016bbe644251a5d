"""The recorder on generated audio, without the pipeline: format, pauses, refusals, failures."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from offhook.recording import meta as M
from offhook.recording import store
from offhook.recording.age import CHUNK, AgeStream, RecipientError, parse_recipient
from offhook.recording.writer import Recorder
from tests.recording.conftest import FRAME, RATE


def record(directory: Path, recipient: str, agent: np.ndarray, customer: np.ndarray, pause=(None, None), **kw):
    kw.setdefault("queue_frames", 10_000)  # pushed faster than real time: nothing may drop here
    recorder = Recorder(directory, recipient, "a84b4c76e66710@pbx.example.com", "ann", **kw)
    assert recorder.start()
    for i in range(len(agent) // FRAME):
        if i == pause[0]:
            recorder.pause()
        if i == pause[1]:
            recorder.resume()
        part = slice(i * FRAME, (i + 1) * FRAME)
        recorder.push(agent[part], customer[part])
    recorder.close()
    return recorder


def decoded(recorder: Recorder, identity: Path, tmp_path: Path) -> np.ndarray:
    out = tmp_path / "out.ogg"
    store.decrypt(recorder.audio_path, identity, out)
    audio, rate = sf.read(out, dtype="float32")
    assert rate == RATE and audio.shape[1] == 2
    return audio


def dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.max(np.abs(x)) + 1e-12))


def test_round_trip_stoi_pause_and_sidecar(tmp_path, keys, talkers):
    from pystoi import stoi

    recipient, identity = keys
    agent, customer = talkers
    rec = record(tmp_path / "rec", recipient, agent, customer, pause=(300, 450))
    audio = decoded(rec, identity, tmp_path)
    n = min(len(audio), len(agent))
    live = np.r_[0 : 294 * FRAME, 452 * FRAME : n]  # outside the pause and its guards
    for channel, played in ((0, agent), (1, customer)):
        # Opus holds the timeline (pre-skip removed): compare sample for sample, outside the pause.
        score = stoi(played[live], audio[live, channel], RATE, extended=False)
        assert score >= 0.9, (channel, score)
    # The whole pause is silent (the guard either side absorbs Opus' spread).
    assert dbfs(audio[300 * FRAME : 450 * FRAME]) <= -50
    meta = M.read(rec.meta_path)
    assert meta.paused == [[3.0, 4.5]]
    assert meta.status == "complete" and meta.call_id.startswith("a84b4c76") and meta.agent == "ann"
    assert meta.duration_s == pytest.approx(n / RATE, abs=0.02) and meta.ended >= meta.started
    assert rec.writer_cpu_s > 0


def test_no_plaintext_on_disk(tmp_path, keys, talkers):
    recipient, _ = keys
    agent, customer = talkers
    rec = record(tmp_path / "rec", recipient, agent[: 100 * FRAME], customer[: 100 * FRAME])
    names = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert names == sorted([rec.audio_path.name, rec.meta_path.name])  # the reserve is gone
    data = rec.audio_path.read_bytes()
    assert data.startswith(b"age-encryption.org/v1\n") and b"OggS" not in data and b"OpusHead" not in data
    assert oct(rec.audio_path.stat().st_mode & 0o777) == "0o600"


def test_age_stream_interoperates_with_pyrage(keys):
    import pyrage

    recipient, identity = keys
    key = store.load_identities(identity)
    for size in (0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK):
        data = os.urandom(size)
        stream = AgeStream(parse_recipient(recipient))
        out = b"".join(stream.push(data[i : i + 5000]) for i in range(0, size, 5000)) + stream.finish()
        assert pyrage.decrypt(out, key) == data


@pytest.mark.parametrize("bad", ["age1qqqq", "AGE1X", "age1" + "q" * 58, "ssh-ed25519 AAAA"])
def test_bad_recipient(bad):
    with pytest.raises(RecipientError):
        parse_recipient(bad)


def test_wrong_identity_refused_nothing_written(tmp_path, keys, talkers):
    import pyrage

    recipient, _ = keys
    rec = record(tmp_path, recipient, talkers[0][: 50 * FRAME], talkers[1][: 50 * FRAME])
    other = tmp_path / "other.key"
    other.write_text(f"{pyrage.x25519.Identity.generate()}\n")
    out = tmp_path / "out.ogg"
    with pytest.raises(store.RecordingError, match="does not match"):
        store.decrypt(rec.audio_path, other, out)
    assert not out.exists() and not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("where", ["header", "stanza", "payload", "truncated", "last_byte", "garbage"])
def test_tampered_or_corrupt_refused(tmp_path, keys, talkers, where):
    recipient, identity = keys
    rec = record(tmp_path, recipient, *talkers)
    data = bytearray(rec.audio_path.read_bytes())
    match = "corrupt, tampered or truncated"
    assert len(data) > CHUNK  # more than one chunk, so truncation at a chunk boundary is tested
    if where == "header":
        data[data.index(b"\n--- ") + 6] ^= 0x01  # the header's MAC
    elif where == "stanza":
        # Another valid base64 letter inside the ephemeral share: the header still parses, but
        # no identity opens it. (Flipping a bit could make an invalid letter, a parse error.)
        data[40] = ord("B") if data[40] == ord("A") else ord("A")
        match = "does not match"
    elif where == "payload":
        data[len(data) // 2] ^= 0x80
    elif where == "truncated":
        data = data[: 200 + CHUNK + 16]  # one whole chunk survives: still refused (no final chunk)
    elif where == "last_byte":
        data[-1] ^= 0x01
    else:
        data = bytearray(b"age-encryption.org/v1\n" + os.urandom(500))
    rec.audio_path.write_bytes(bytes(data))
    out = tmp_path / "out.ogg"
    with pytest.raises(store.RecordingError, match=match):
        store.decrypt(rec.audio_path, identity, out)
    assert not out.exists()


def test_unwritable_directory_alerts_and_records_nothing(tmp_path, keys):
    recipient, _ = keys
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    alerts: list[str] = []
    rec = Recorder(blocked / "rec", recipient, "c1", "ann", on_failure=alerts.append)
    assert not rec.start()
    rec.push(np.zeros(FRAME, np.float32), np.zeros(FRAME, np.float32))  # a no-op, never raises
    rec.close()
    assert len(alerts) == 1 and "cannot record into" in alerts[0]


def test_full_queue_drops_to_silence_keeps_timeline(tmp_path, keys, talkers):
    recipient, identity = keys
    agent, customer = talkers
    rec = Recorder(tmp_path, recipient, "c2", "ann", queue_frames=4)
    assert rec.start()
    frames = 300
    for i in range(frames):  # pushed far faster than real time: the small queue overflows
        part = slice(i * FRAME, (i + 1) * FRAME)
        rec.push(agent[part], customer[part])
    rec.close()
    audio = decoded(rec, identity, tmp_path)
    assert abs(len(audio) - frames * FRAME) <= FRAME  # dropped frames became silence, not a shift
    assert rec.frames_dropped > 0


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")


def test_full_disk_mid_call(tmp_path, keys, talkers):
    """A 640 KiB tmpfs fills during the call: one alert, the push side never raises, the file
    and sidecar say what happened, and the audio written so far decrypts."""
    recipient, identity = keys
    agent, customer = talkers
    disk = tmp_path / "disk"
    _tmpfs(disk, "640k")
    try:
        alerts: list[str] = []
        rec = Recorder(disk, recipient, "c3", "ann", on_failure=alerts.append, queue_frames=10_000)
        assert rec.start()
        filler = disk / "other-program"
        with open(filler, "wb") as f, contextlib.suppress(OSError):  # someone else fills the disk mid-call
            f.write(bytes(256 * 1024))
        pushed = 0
        for _rounds in range(40):  # 40 x 8 s of talk: far more than fits
            for i in range(len(agent) // FRAME):
                part = slice(i * FRAME, (i + 1) * FRAME)
                rec.push(agent[part], customer[part])
                pushed += 1
            if rec.failed:
                break
        rec.close()
        assert len(alerts) == 1 and "disk full" in alerts[0], alerts
        meta = json.loads(rec.meta_path.read_text())
        assert meta["status"] == "stopped" and meta["reason"] == "disk full"
        out = tmp_path / "out.ogg"
        store.decrypt(rec.audio_path, identity, out)
        audio, _ = sf.read(out, dtype="float32")
        assert 1.0 < len(audio) / RATE < pushed * FRAME / RATE
        assert meta["duration_s"] == pytest.approx(len(audio) / RATE, abs=0.05)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_write_error_is_not_raised_to_the_caller(tmp_path, keys, monkeypatch):
    recipient, _ = keys
    alerts: list[str] = []
    rec = Recorder(tmp_path, recipient, "c4", "ann", on_failure=alerts.append)
    assert rec.start()
    real_write = os.write

    def failing(fd: int, data: bytes) -> int:
        if fd == rec._fd:
            raise OSError(errno.EIO, "Input/output error")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing)
    for _ in range(2000):
        rec.push(np.ones(FRAME, np.float32) * 0.1, np.zeros(FRAME, np.float32))
    rec.close()
    assert alerts == ["recording stopped: Input/output error"]


def test_sink_refuses_backward_seek():
    from offhook.recording.writer import _Sink

    sink = _Sink()
    sink.write(b"abc")
    assert sink.seek(0, io.SEEK_END) == 3
    with pytest.raises(OSError):
        sink.seek(0)


@pytest.mark.parametrize("start", [13, 101, 187, 260, 333, 419, 502, 641])
def test_pause_is_silent_wherever_it_falls_in_loud_speech(tmp_path, keys, talkers, start):
    """Speech peaking at -1 dBFS on both sides; a 300 ms pause at frame ``start``: the whole span
    decodes at or below -50 dBFS (the guards absorb Opus' spread; -52.4 worst over 32 positions)."""
    recipient, identity = keys
    agent, customer = (0.9 * x / np.max(np.abs(x)) for x in talkers)
    rec = record(tmp_path / "rec", recipient, agent, customer, pause=(start, start + 30))
    audio = decoded(rec, identity, tmp_path)
    assert dbfs(audio[start * FRAME : (start + 30) * FRAME]) <= -50
    assert M.read(rec.meta_path).paused == [[start / 100, (start + 30) / 100]]


def _crash_copy(tmp_path, recipient, talkers, seconds: int = 16):
    """What a crash leaves on disk: the file as written so far, with no final chunk."""
    agent, customer = talkers
    rec = Recorder(tmp_path / "rec", recipient, "crash", "ann", queue_frames=10_000)
    assert rec.start()
    frames = len(agent) // FRAME
    for i in range(seconds * 100):
        part = slice((i % frames) * FRAME, (i % frames + 1) * FRAME)
        rec.push(agent[part], customer[part])
    deadline = time.monotonic() + 30
    while rec.samples < seconds * 100 * FRAME and time.monotonic() < deadline:  # the writer took it all
        time.sleep(0.01)
    time.sleep(0.1)
    crashed = tmp_path / "crashed.ogg.age"
    crashed.write_bytes(rec.audio_path.read_bytes())
    buffered = rec._stream.buffered
    assert M.read(rec.meta_path).duration_s == seconds // 10 * 10  # kept up to date every 10 s
    rec.close()
    return crashed, buffered


def test_a_crash_loses_only_the_unsealed_tail(tmp_path, keys, talkers):
    recipient, identity = keys
    crashed, buffered = _crash_copy(tmp_path, recipient, talkers)
    out = tmp_path / "out.ogg"
    with pytest.raises(store.RecordingError, match="--salvage"):
        store.decrypt(crashed, identity, out)
    assert not out.exists()
    size, complete = store.decrypt(crashed, identity, out, salvage=True)
    assert not complete and size > 0
    audio, _ = sf.read(out, dtype="float32")
    # Lost: the last age chunk's worth of Opus (at most 64 KiB: ~4.5 s of this speech), no more.
    lost_s = 16 - len(audio) / RATE
    assert 0 < lost_s <= CHUNK / 14_000 + 0.5, (lost_s, buffered)


def test_salvage_refuses_tampered_chunks_and_reads_complete_files(tmp_path, keys, talkers):
    from offhook.recording.age import SalvageError, parse_identity, salvage

    recipient, identity = keys
    crashed, _ = _crash_copy(tmp_path, recipient, talkers)
    secret = parse_identity(identity.read_text().splitlines()[1])
    data = bytearray(crashed.read_bytes())
    data[len(data) // 3] ^= 1
    with pytest.raises(SalvageError, match="does not authenticate"):
        salvage(bytes(data), secret)
    rec = record(tmp_path / "whole", recipient, *talkers)
    import pyrage

    whole = rec.audio_path.read_bytes()
    assert salvage(whole, secret) == (pyrage.decrypt(whole, store.load_identities(identity)), True)
