"""One call's recording: stereo Ogg/Opus, encrypted to an age recipient as it is written.

The real-time thread only calls ``push`` (a non-blocking put on a bounded queue; a full queue
drops the frame and the writer writes silence in its place, so the timeline holds). The writer
thread encodes with soundfile (libsndfile) into memory and hands the Ogg pages straight to the
age stream: only ciphertext reaches the disk. Left: the agent as the customer heard them (after
mute); right: the customer. While paused, ``push`` queues silence markers, not the audio.

A write that fails (full disk, directory gone, read-only) stops the recording: a reserve file
made at the start is released so the age stream's last chunk and the sidecar still fit, the
recording is marked ``stopped`` and ``on_failure`` is called once (the daemon raises the alert);
the call goes on untouched. A crash loses what is not sealed yet: ``AgeStream.buffered`` bytes
(at most 64 KiB of Opus), libsndfile's unflushed page and the audio held back from the encoder
(the guard and up to one batch); see docs/recording.md.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from offhook.recording import meta as M
from offhook.recording.age import AgeStream, parse_recipient

QUEUE_FRAMES = 500  # 5 s of 10 ms frames: the writer may stall that long before audio is lost
# Opus spreads a transition over ~30 ms: the audio just before a pause (or hold, or consult) is
# silenced over this much (held back from the encoder that long), and just after it, so the whole
# silent span decodes at or below -50 dBFS. That much speech either side of it is lost.
PAUSE_GUARD_S = 0.06
RESUME_GUARD_S = 0.02
# The writer wakes at most this often and encodes what gathered in one go: one thread switch and
# one encoder call per 100 ms instead of per 10 ms frame (bench_recording: the real-time thread's
# CPU with recording on beside off). A crash loses this much more (docs/recording.md).
BATCH_S = 0.1
SIDECAR_EVERY_S = 10  # the sidecar's duration is brought up to date this often
RESERVE_BYTES = 256 * 1024  # released on a full disk: room for the final chunk and the sidecar
# (agent, customer, samples, silence owed before it, paused); audio None: silence (paused, on hold).
_Item = tuple[np.ndarray | None, np.ndarray | None, int, int, bool]
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class _Sink(io.RawIOBase):
    """libsndfile's output, kept in memory: the writer takes it out after each write."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # libsndfile asks; Ogg/Opus only writes forward

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        self.position += len(b)
        return len(b)

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        target = {0: offset, 1: self.position + offset, 2: self.position + offset}[whence]
        if target != self.position and not (whence == 2 and offset == 0):
            raise OSError("the recording stream only goes forward")
        return self.position

    def take(self) -> bytes:
        out = bytes(self.data)
        self.data.clear()
        return out


def file_stem(call_id: str, started: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    return f"{stamp}_{_SAFE.sub('_', call_id)[:80] or 'call'}"


class Recorder:
    """Records one call. ``start`` in the control thread, ``push``/``pause``/``resume`` anywhere,
    ``close`` at the end (waits for the writer)."""

    def __init__(
        self,
        directory: Path,
        recipient: str,
        call_id: str,
        agent: str,
        samplerate: int = 48000,
        on_failure: Callable[[str], None] | None = None,
        queue_frames: int = QUEUE_FRAMES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self._recipient = parse_recipient(recipient)
        self.samplerate = samplerate
        self.on_failure = on_failure
        self._clock = clock
        started = clock()
        stem = file_stem(call_id, started)
        self.audio_path = self.directory / (stem + M.AUDIO_SUFFIX)
        self.meta_path = self.directory / (stem + M.SUFFIX)
        self._reserve = self.directory / f".{stem}.reserve"
        self.meta = M.Meta(call_id, agent, started, samplerate, recipient=recipient.strip(), audio=self.audio_path.name)
        self._queue: queue.Queue[_Item | None] = queue.Queue(queue_frames)
        self._paused = False
        self._dropped = 0  # frames the full queue refused, written as silence later
        self._lock = threading.Lock()
        self._fd = -1
        self._thread: threading.Thread | None = None
        self.failed = ""  # why the recording stopped early
        self.samples = 0  # written to the encoder
        self._pause_from: float | None = None
        self.writer_cpu_s = 0.0
        self.frames_dropped = 0  # samples lost to a full queue (written as silence)
        self._closing = False
        self._guard = round(PAUSE_GUARD_S * samplerate)
        self._batch = round(BATCH_S * samplerate)
        # Not yet encoded: the last PAUSE_GUARD_S, and before it up to BATCH_S waiting for the encoder.
        self._held = np.zeros((0, 2), np.float32)
        self._quiet = 0  # samples still to silence after a resume
        self._silent = False  # the last frame was silence (paused, held, consulting)

    # ------------------------------------------------------------ control side

    def start(self) -> bool:
        """Create the files and the writer thread; False (and ``on_failure``) if the directory
        cannot take them: the call goes on without a recording."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(self._reserve, "wb") as reserve:
                reserve.write(bytes(RESERVE_BYTES))
            self._fd = os.open(self.audio_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            M.write(self.meta_path, self.meta)
        except OSError as exc:
            self._fail(f"cannot record into {self.directory}: {exc.strerror or exc}")
            self._cleanup_failed_start()
            return False
        self._stream = AgeStream(self._recipient)
        self._sink = _Sink()
        self._encoder = sf.SoundFile(
            self._sink, "w", samplerate=self.samplerate, channels=2, format="OGG", subtype="OPUS"
        )
        self._thread = threading.Thread(target=self._run, name="offhook-recorder", daemon=True)
        self._thread.start()
        return True

    def _cleanup_failed_start(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for path in (self._reserve, self.audio_path):
            with contextlib.suppress(OSError):
                path.unlink()

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def push(self, agent: np.ndarray, customer: np.ndarray) -> None:
        """One frame each side (float, same length). Never blocks: the real-time thread calls it."""
        if self.failed or self._thread is None or self._closing:
            return
        # Paused: only the length crosses, so a paused frame's audio is never queued. Frames a full
        # queue refused ride along with the next one as silence to write first: the timeline holds.
        if self._paused:
            self._put((None, None, len(agent), self._dropped, True))
        else:
            # Copies: the audio thread may reuse its buffers for the next frame.
            self._put((np.array(agent, np.float32), np.array(customer, np.float32), len(agent), self._dropped, False))

    def push_silence(self, samples: int) -> None:
        """A frame's time in silence, not a pause: the call is on hold or the agent consults
        (the consult leg never goes into the customer's file). A pause still wins."""
        if self.failed or self._thread is None or self._closing:
            return
        self._put((None, None, samples, self._dropped, self._paused))

    def _put(self, item: _Item) -> None:
        try:
            self._queue.put_nowait(item)
            self._dropped = 0
        except queue.Full:
            self._dropped += item[2]

    def close(self, timeout: float = 10.0) -> M.Meta:
        """End the recording: the writer drains the queue, seals the last chunk, writes the sidecar.
        A second call (another thread) only waits for the writer."""
        if self._thread is not None:
            with self._lock:
                first, self._closing = not self._closing, True
            if first:
                self._dropped, owed = 0, self._dropped
                for item in ((None, None, 0, owed, False), None):
                    try:
                        self._queue.put(item, timeout=timeout)
                    except queue.Full:  # the writer is stuck (a hung disk): give up on it, never on the call
                        break
            self._thread.join(timeout)
        return self.meta

    # ------------------------------------------------------------ writer thread

    def _run(self) -> None:
        started = time.thread_time()
        try:
            done = False
            while not done:
                items = [self._queue.get()]
                if items[0] is not None and not self._closing:
                    time.sleep(BATCH_S)  # let a batch gather: the audio thread's put wakes nobody meanwhile
                while items[-1] is not None:
                    try:
                        items.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                for item in items:
                    if item is None:
                        done = True
                        break
                    if self.failed:
                        continue
                    try:
                        self._encode(item)
                    except OSError as exc:
                        self._stop_on_error(exc)
            if not self.failed:
                try:
                    self._finish("complete")
                except OSError as exc:
                    self._stop_on_error(exc)
        finally:
            self.writer_cpu_s = time.thread_time() - started

    def _encode(self, item: _Item) -> None:
        agent, customer, count, gap, paused = item
        if gap:
            self.frames_dropped += gap
            self._write_frames(np.zeros((gap, 2), np.float32))
        if not count:  # the closing item: only the silence owed for the last frames dropped
            return
        self._mark_pause(paused)
        silent = agent is None or customer is None
        if silent != self._silent:  # pause, hold or consult begins or ends: guard the edge
            self._silent = silent
            if silent:
                self._held[-self._guard :] = 0  # the guard before the silent span
            else:
                self._quiet = round(RESUME_GUARD_S * self.samplerate)
        if agent is None or customer is None:
            self._write_frames(np.zeros((count, 2), np.float32))
            return
        self._write_frames(np.column_stack((agent, customer)).astype(np.float32, copy=False))

    def _mark_pause(self, paused: bool) -> None:
        at = round(self.samples / self.samplerate, 3)
        if paused and self._pause_from is None:
            self._pause_from = at
            self.meta.paused.append([at, at])
            self._save_meta()
        elif not paused and self._pause_from is not None:
            self._pause_from = None
            self.meta.paused[-1][1] = at
            self._save_meta()

    def _write_frames(self, frames: np.ndarray) -> None:
        if self._quiet:
            quiet = min(self._quiet, len(frames))
            frames = frames.copy()
            frames[:quiet] = 0
            self._quiet -= quiet
        before = self.samples
        self.samples += len(frames)
        if self.samples // (SIDECAR_EVERY_S * self.samplerate) != before // (SIDECAR_EVERY_S * self.samplerate):
            self._save_meta()  # after a crash the sidecar still says how long the call ran
        self._held = np.concatenate((self._held, frames))
        ready = len(self._held) - self._guard
        if ready >= self._batch:
            self._encoder.write(self._held[:ready])
            self._held = self._held[ready:]
            self._write(self._stream.push(self._sink.take()))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        full = False
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                # The first full-disk error frees the reserve, so these bytes still land whole and
                # the stream stays consistent; then the recording stops (raised below).
                if exc.errno in (errno.ENOSPC, errno.EDQUOT) and self._release_reserve():
                    full = True
                    continue
                raise
            view = view[written:]
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def _release_reserve(self) -> bool:
        try:
            self._reserve.unlink()
        except OSError:
            return False
        return True

    def _save_meta(self) -> None:
        self.meta.duration_s = round(self.samples / self.samplerate, 3)
        if self._pause_from is not None and self.meta.paused:
            self.meta.paused[-1][1] = self.meta.duration_s
        M.write(self.meta_path, self.meta)

    def _finish(self, status: str) -> None:
        """Seal the stream (the encoder's last pages, then age's final chunk) and close the files."""
        if len(self._held):
            self._encoder.write(self._held)
            self._held = self._held[:0]
        self._encoder.close()
        self._write(self._stream.push(self._sink.take()) + self._stream.finish())
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        self._release_reserve()
        self.meta.status = status
        self.meta.ended = self._clock()
        self._save_meta()

    def _stop_on_error(self, exc: OSError) -> None:
        """A write failed: keep what is on disk decryptable, stop recording, tell the daemon."""
        reason = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        self.meta.reason = reason
        if self._fd >= 0 and not self._stream.finished:
            try:
                self._release_reserve()
                self._finish("stopped")
            except OSError:
                # Nothing more fits: the file lacks its final chunk (docs/recording.md).
                self.meta.status = "stopped"
                with contextlib.suppress(OSError):
                    self._save_meta()
        self._fail(f"recording stopped: {reason}")

    def _fail(self, message: str) -> None:
        with self._lock:
            if self.failed:
                return
            self.failed = message
        if self.on_failure is not None:
            self.on_failure(message)
