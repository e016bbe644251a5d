"""PulseAudio's asynchronous client API (libpulse) through ctypes: the real-time pipeline's
direct backend, with no PortAudio or ALSA plugin in between.

Why: through PortAudio's ALSA ``pulse`` route each capture stream busy-polls between periods
(about 12 % of a core each here) and callbacks stall under load, so the mic path overruns and
latency wanders (docs/audio.md). Here every stream lives on one ``pa_threaded_mainloop`` thread
that sleeps in poll() until the server has captured data, and playback is written as soon as it
is produced. Buffer sizes are asked for explicitly (``pa_buffer_attr`` with
``PA_STREAM_ADJUST_LATENCY``) and the server's own underflow and overflow notifications are
counted, so xruns are the server's figures, not guesses.

Only what offhook needs is bound: mono s16le record and playback streams, their xrun counters
and latency. Speaks PulseAudio's protocol, which pipewire-pulse also serves (tested here on PulseAudio 16.1).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from offhook.audio import pcm
from offhook.audio.pulse import PulseError

Float = NDArray[np.float64]

PA_SAMPLE_S16LE = 3
PA_CONTEXT_NOAUTOSPAWN = 1
PA_CONTEXT_READY, PA_CONTEXT_FAILED, PA_CONTEXT_TERMINATED = 4, 5, 6
PA_STREAM_READY, PA_STREAM_FAILED, PA_STREAM_TERMINATED = 2, 3, 4
PA_STREAM_INTERPOLATE_TIMING = 0x2
PA_STREAM_AUTO_TIMING_UPDATE = 0x8
PA_STREAM_ADJUST_LATENCY = 0x2000
PA_SEEK_RELATIVE = 0
PA_SEEK_RELATIVE_ON_READ = 2
NO_VALUE = 0xFFFFFFFF  # (uint32_t) -1: "server default" in pa_buffer_attr


class SampleSpec(ctypes.Structure):
    _fields_ = [("format", ctypes.c_int), ("rate", ctypes.c_uint32), ("channels", ctypes.c_uint8)]


class BufferAttr(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("maxlength", "tlength", "prebuf", "minreq", "fragsize")]


CONTEXT_NOTIFY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
STREAM_NOTIFY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
STREAM_REQUEST = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)

_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """libpulse.so.0 with the prototypes used here (loaded once)."""
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("pulse") or "libpulse.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise PulseError(f"libpulse not found ({exc}): install libpulse0") from exc
    vp, cp, i, sz = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t
    prototypes: dict[str, tuple[object, list[object]]] = {
        "pa_threaded_mainloop_new": (vp, []),
        "pa_threaded_mainloop_start": (i, [vp]),
        "pa_threaded_mainloop_stop": (None, [vp]),
        "pa_threaded_mainloop_free": (None, [vp]),
        "pa_threaded_mainloop_lock": (None, [vp]),
        "pa_threaded_mainloop_unlock": (None, [vp]),
        "pa_threaded_mainloop_wait": (None, [vp]),
        "pa_threaded_mainloop_signal": (None, [vp, i]),
        "pa_threaded_mainloop_get_api": (vp, [vp]),
        "pa_context_new": (vp, [vp, cp]),
        "pa_context_set_state_callback": (None, [vp, CONTEXT_NOTIFY, vp]),
        "pa_context_connect": (i, [vp, cp, i, vp]),
        "pa_context_get_state": (i, [vp]),
        "pa_context_errno": (i, [vp]),
        "pa_context_disconnect": (None, [vp]),
        "pa_context_unref": (None, [vp]),
        "pa_strerror": (cp, [i]),
        "pa_stream_new": (vp, [vp, cp, ctypes.POINTER(SampleSpec), vp]),
        "pa_stream_set_state_callback": (None, [vp, STREAM_NOTIFY, vp]),
        "pa_stream_set_read_callback": (None, [vp, STREAM_REQUEST, vp]),
        "pa_stream_set_underflow_callback": (None, [vp, STREAM_NOTIFY, vp]),
        "pa_stream_set_overflow_callback": (None, [vp, STREAM_NOTIFY, vp]),
        "pa_stream_connect_record": (i, [vp, cp, ctypes.POINTER(BufferAttr), i]),
        "pa_stream_connect_playback": (i, [vp, cp, ctypes.POINTER(BufferAttr), i, vp, vp]),
        "pa_stream_get_state": (i, [vp]),
        "pa_stream_peek": (i, [vp, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(sz)]),
        "pa_stream_drop": (i, [vp]),
        "pa_stream_write": (i, [vp, vp, sz, vp, ctypes.c_int64, i]),
        "pa_stream_get_latency": (i, [vp, ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(i)]),
        "pa_stream_disconnect": (i, [vp]),
        "pa_stream_unref": (None, [vp]),
    }
    for fn_name, (restype, argtypes) in prototypes.items():
        fn = getattr(lib, fn_name)
        fn.restype = restype
        fn.argtypes = argtypes
    _lib = lib
    return lib


@dataclass
class StreamCounters:
    name: str
    underflows: int = 0  # playback: the server ran out of data and played silence
    overflows: int = 0  # record: the server dropped captured data we did not read in time
    holes: int = 0  # record: gaps the server reported in the captured data
    resyncs: int = 0  # playback: writes re-anchored after the stream fell behind for good


class _Stream:
    def __init__(self, name: str, device: str | None, period: int) -> None:
        self.name, self.device, self.period = name, device, period
        self.pointer: int | None = None
        self.counters = StreamCounters(name)
        self.callbacks: list[object] = []  # ctypes callback objects must outlive the stream


class Playback(_Stream):
    """A playback stream written to from the mainloop thread (inside a record callback).

    ``latency``: what the server should hold just before each write (the stream's queue plus the
    sink's own latency), in samples: slack for a late write. The sink's part is fixed at
    :attr:`SINK_MS` (PA_STREAM_ADJUST_LATENCY gives the sink ``(tlength - 2 minreq) / 2``), so a
    larger ``latency`` is all slack.

    Writes keep time: each lands right after the previous one, and whatever the server could not
    play in time (after a stall) is dropped by it rather than played late, so the delay from a
    write to the speaker never creeps. The first write is anchored so that the server holds
    ``latency`` before the next one, and so is a write after the stream stayed behind for
    several writes (captured audio lost upstream, so the backlog never came)."""

    BEHIND_WRITES = 3
    SINK_MS = 5.0

    def __init__(self, owner: PulseStreams, name: str, device: str | None, period: int, latency: int) -> None:
        super().__init__(name, device, period)
        self.sink = min(int(owner.rate * self.SINK_MS / 1000), latency // 2)
        self.target = latency
        self._lib = owner._lib
        self._anchored = False
        self._behind = 0

    def buffer_attr(self) -> BufferAttr:
        tlength = self.target + self.period
        minreq = max(1, (tlength - 2 * self.sink) // 2)
        # prebuf 0: after an underflow the server plays silence and keeps time (data that arrives
        # too late is dropped) instead of pausing until refilled, which would shift everything
        # played after it: the echo path's delay would jump and the canceller would have to
        # re-converge, and the mic path's latency would grow.
        return BufferAttr(NO_VALUE, 2 * tlength, 0, 2 * minreq, NO_VALUE)

    def write(self, samples: Float, latency: float | None) -> None:
        """``latency``: :meth:`latency` read just before (the caller steers its drift on it too)."""
        if self.pointer is None or not len(samples):
            return
        self._behind = self._behind + 1 if latency is not None and latency < 0 else 0
        seek, offset = PA_SEEK_RELATIVE, 0
        if not self._anchored or self._behind >= self.BEHIND_WRITES:
            seek, offset = PA_SEEK_RELATIVE_ON_READ, 2 * (self.target - self.sink)
            self.counters.resyncs += self._anchored
            self._anchored, self._behind = True, 0
        data = pcm.encode(samples)
        self._lib.pa_stream_write(self.pointer, data, len(data), None, offset, seek)

    def latency(self) -> float | None:
        """Seconds until a sample written now is played (the server's interpolated estimate:
        queued data plus the sink's own latency); None before the first timing update."""
        if self.pointer is None:
            return None
        usec, negative = ctypes.c_uint64(), ctypes.c_int()
        if self._lib.pa_stream_get_latency(self.pointer, ctypes.byref(usec), ctypes.byref(negative)) < 0:
            return None
        return (-1.0 if negative.value else 1.0) * usec.value / 1e6


class PulseStreams:
    """Mono s16le record and playback streams on one libpulse mainloop thread.

    ``add_record(name, device, period, on_samples)``: ``on_samples`` gets whole periods of
    float64 samples, on the mainloop thread, one call at a time; it must not block.
    ``add_playback(name, device, period, latency)`` returns a :class:`Playback` that the record
    callbacks write to (push model: audio goes out as soon as it is produced, nothing waits for
    the server to ask). ``start()`` connects everything, raising :class:`PulseError` with the
    server's reason; ``stop()`` tears it down. Counters are readable at any time.
    """

    def __init__(self, rate: int, app_name: str = "offhook", server: str | None = None) -> None:
        self.rate = rate
        self.app_name = app_name
        self.server = server  # None: $PULSE_SERVER or the user's default server
        self.started = False
        self._lib = library()
        self._records: list[tuple[_Stream, Callable[[Float], None]]] = []
        self._playbacks: list[Playback] = []
        self._mainloop: int | None = None
        self._context: int | None = None
        self._context_cb = CONTEXT_NOTIFY(self._on_state)
        self._callback_error: BaseException | None = None

    def add_record(self, name: str, device: str | None, period: int, on_samples: Callable[[Float], None]) -> None:
        self._records.append((_Stream(name, device, period), on_samples))

    def add_playback(self, name: str, device: str | None, period: int, latency: int) -> Playback:
        """``period``: samples per write; ``latency``: what the server should hold just before
        each write, in samples (see :class:`Playback`)."""
        stream = Playback(self, name, device, period, latency)
        self._playbacks.append(stream)
        return stream

    @property
    def counters(self) -> list[StreamCounters]:
        return [s.counters for s, _ in self._records] + [s.counters for s in self._playbacks]

    @property
    def callback_error(self) -> BaseException | None:
        """The first exception a record callback raised (that period is dropped, the rest go on)."""
        return self._callback_error

    # -- mainloop-thread callbacks ---------------------------------------------------------------
    def _on_state(self, _pointer: int, _userdata: int) -> None:
        self._lib.pa_threaded_mainloop_signal(self._mainloop, 0)

    def _reader(self, stream: _Stream, on_samples: Callable[[Float], None]) -> Callable[[int, int, int], None]:
        lib = self._lib
        period_bytes = 2 * stream.period
        pending = bytearray()  # bytes short of a whole period

        def on_read(pointer: int, _nbytes: int, _userdata: int) -> None:
            data = ctypes.c_void_p()
            size = ctypes.c_size_t()
            while lib.pa_stream_peek(pointer, ctypes.byref(data), ctypes.byref(size)) == 0 and size.value:
                if data.value:
                    pending.extend(ctypes.string_at(data.value, size.value))
                else:  # a hole: keep time with silence rather than shift everything after it
                    stream.counters.holes += 1
                    pending.extend(bytes(size.value))
                lib.pa_stream_drop(pointer)
            while len(pending) >= period_bytes:
                samples = pcm.decode(bytes(pending[:period_bytes]))
                del pending[:period_bytes]
                try:
                    on_samples(samples)
                except Exception as exc:  # must not unwind into libpulse's C frames
                    if self._callback_error is None:
                        self._callback_error = exc

        return on_read

    def _counter(self, stream: _Stream, field: str) -> Callable[[int, int], None]:
        def bump(_pointer: int, _userdata: int) -> None:
            setattr(stream.counters, field, getattr(stream.counters, field) + 1)

        return bump

    # -- set-up and tear-down --------------------------------------------------------------------
    def _error(self, what: str) -> PulseError:
        code = self._lib.pa_context_errno(self._context) if self._context else 0
        reason = self._lib.pa_strerror(code).decode() if code else "unknown error"
        return PulseError(f"{what}: {reason}")

    def start(self) -> None:
        lib = self._lib
        self._mainloop = lib.pa_threaded_mainloop_new()
        api = lib.pa_threaded_mainloop_get_api(self._mainloop)
        self._context = lib.pa_context_new(api, self.app_name.encode())
        lib.pa_context_set_state_callback(self._context, self._context_cb, None)
        server = self.server.encode() if self.server else None
        if lib.pa_context_connect(self._context, server, PA_CONTEXT_NOAUTOSPAWN, None) < 0:
            error = self._error("PulseAudio connection failed")
            self.stop()
            raise error
        lib.pa_threaded_mainloop_lock(self._mainloop)
        try:
            lib.pa_threaded_mainloop_start(self._mainloop)
            self._wait(lambda: lib.pa_context_get_state(self._context), PA_CONTEXT_READY,
                       (PA_CONTEXT_FAILED, PA_CONTEXT_TERMINATED), "PulseAudio connection")  # fmt: skip
            # Playback first: the record callbacks write to them from the first period on.
            for playback in self._playbacks:
                self._connect(playback, None)
            for stream, on_samples in self._records:
                self._connect(stream, STREAM_REQUEST(self._reader(stream, on_samples)))
        except PulseError:
            lib.pa_threaded_mainloop_unlock(self._mainloop)
            self.stop()
            raise
        lib.pa_threaded_mainloop_unlock(self._mainloop)
        self.started = True

    def _wait(self, state: Callable[[], int], ready: int, failed: tuple[int, int], what: str) -> None:
        """Wait (mainloop locked; state callbacks signal) until ``state()`` is ``ready``."""
        while (current := state()) != ready:
            if current in failed:
                raise self._error(f"{what} failed")
            self._lib.pa_threaded_mainloop_wait(self._mainloop)

    def _connect(self, stream: _Stream, on_read: object | None) -> None:
        """Connect a record stream (``on_read`` given) or a playback stream (mainloop locked)."""
        lib = self._lib
        spec = SampleSpec(PA_SAMPLE_S16LE, self.rate, 1)
        pointer = lib.pa_stream_new(self._context, stream.name.encode(), ctypes.byref(spec), None)
        if not pointer:
            raise self._error(f"stream {stream.name}")
        stream.pointer = pointer
        state_cb = STREAM_NOTIFY(self._on_state)
        stream.callbacks.append(state_cb)
        lib.pa_stream_set_state_callback(pointer, state_cb, None)
        period_bytes = 2 * stream.period
        flags = PA_STREAM_ADJUST_LATENCY | PA_STREAM_INTERPOLATE_TIMING | PA_STREAM_AUTO_TIMING_UPDATE
        device = stream.device.encode() if stream.device else None
        if on_read is not None:
            overflow = STREAM_NOTIFY(self._counter(stream, "overflows"))
            stream.callbacks += [on_read, overflow]
            lib.pa_stream_set_read_callback(pointer, on_read, None)
            lib.pa_stream_set_overflow_callback(pointer, overflow, None)
            attr = BufferAttr(NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE, period_bytes)
            result = lib.pa_stream_connect_record(pointer, device, ctypes.byref(attr), flags)
        else:
            assert isinstance(stream, Playback)
            underflow = STREAM_NOTIFY(self._counter(stream, "underflows"))
            stream.callbacks.append(underflow)
            lib.pa_stream_set_underflow_callback(pointer, underflow, None)
            attr = stream.buffer_attr()
            result = lib.pa_stream_connect_playback(pointer, device, ctypes.byref(attr), flags, None, None)
        where = f"stream {stream.name} on {stream.device or 'the default device'}"
        if result < 0:
            raise self._error(where)
        self._wait(lambda: lib.pa_stream_get_state(pointer), PA_STREAM_READY,
                   (PA_STREAM_FAILED, PA_STREAM_TERMINATED), where)  # fmt: skip

    def stop(self) -> None:
        lib = self._lib
        if self._mainloop is None:
            return
        lib.pa_threaded_mainloop_lock(self._mainloop)
        for stream in [s for s, _ in self._records] + list(self._playbacks):
            if stream.pointer is not None:
                lib.pa_stream_disconnect(stream.pointer)
                lib.pa_stream_unref(stream.pointer)
                stream.pointer = None
        if self._context is not None:
            lib.pa_context_disconnect(self._context)
            lib.pa_context_unref(self._context)
            self._context = None
        lib.pa_threaded_mainloop_unlock(self._mainloop)
        lib.pa_threaded_mainloop_stop(self._mainloop)
        lib.pa_threaded_mainloop_free(self._mainloop)
        self._mainloop = None
        self.started = False
