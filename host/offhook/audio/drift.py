"""Clock-drift compensation between two audio clocks: adaptive resampling steered by a fill level.

The null sinks run on the system clock, the headset on its own crystal; a few hundred ppm apart,
a plain queue between them fills or drains by ~1 frame a minute until it xruns. Here audio is
read at a rate ``ratio`` close to 1, steered by a PI controller on a fill level, so the level
stays at ``target`` and nothing is dropped or repeated. Linear interpolation is enough: the
correction is below 0.1 %, so the read position moves by less than a sample per 10 ms frame.

- :class:`DriftBuffer` (pull model, PortAudio callbacks): a FIFO between a producer and a
  consumer callback, steered on its own fill.
- :class:`DriftResampler` (push model, libpulse): every frame goes out as soon as it is
  produced, steered on what is still queued downstream (the server's playback latency).
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float64]
MAX_PPM = 2000.0


class Steering:
    """PI loop from a fill level to a read ratio (reading faster than 1 drains the level)."""

    def __init__(self, target: float) -> None:
        self.target = target
        self._integral = 0.0
        self._smoothed = float(target)
        self.ratio = 1.0

    def update(self, fill: float, unit: int) -> float:
        """``fill`` as seen now; ``unit`` is the samples read per update (errors are in units of it)."""
        # Time constant ~50 updates of the smoothing, ~500 of the loop (5 s at 10 ms), integral
        # ~50 s, so callback jitter is averaged out and only the clock drift remains.
        self._smoothed += 0.02 * (fill - self._smoothed)
        error = (self._smoothed - self.target) / max(1, unit)
        self._integral = float(np.clip(self._integral + error / 5000.0, -1.0, 1.0))
        ppm = float(np.clip(1e6 * (error / 500.0 + self._integral / 500.0), -MAX_PPM, MAX_PPM))
        self.ratio = 1.0 + ppm * 1e-6
        return self.ratio


class DriftResampler:
    """Push model: each frame in gives the frame out at once, resampled by a ratio steered so
    that ``queued`` (samples still waiting downstream) stays at ``target``. Holds back one
    sample (the interpolation's right neighbour) plus the fraction the ratio leaves over."""

    def __init__(self, target: float) -> None:
        self.steering = Steering(target)
        self._tail = np.zeros(0)
        self._pos = 0.0

    @property
    def ratio(self) -> float:
        return self.steering.ratio

    def process(self, samples: Float, queued: float | None) -> Float:
        """``queued`` None (the downstream level is not known yet): pass through at the last ratio."""
        if queued is not None:  # downstream plus what this resampler still holds back
            self.steering.update(queued + len(self._tail) - self._pos, len(samples))
        ratio = self.ratio
        buf = np.concatenate((self._tail, np.asarray(samples, dtype=np.float64)))
        if len(buf) < 2:
            self._tail = buf
            return np.zeros(0)
        count = int(np.floor((len(buf) - 1 - self._pos) / ratio - 1e-9)) + 1  # keep a right neighbour
        out, self._tail, self._pos = _read(buf, self._pos, ratio, count)
        return out


class DriftBuffer:
    def __init__(self, target: int, capacity: int) -> None:
        self.target = target
        self.capacity = capacity
        self._buf = np.zeros(0)
        self._pos = 0.0
        self._lock = threading.Lock()
        self.steering = Steering(target)
        self.underruns = 0
        self.stretches = 0  # short reads concealed by reading slower for one pull
        self.overruns = 0

    @property
    def ratio(self) -> float:
        return self.steering.ratio

    @property
    def fill(self) -> float:
        with self._lock:
            return len(self._buf) - self._pos

    def push(self, samples: Float) -> None:
        with self._lock:
            self._buf = np.concatenate((self._buf, np.asarray(samples, dtype=np.float64)))
            if len(self._buf) - self._pos > self.capacity:
                # Backlog (stream start-up, a stalled consumer): drop the oldest, keep the target.
                drop = int(len(self._buf) - self._pos - self.target)
                self._buf = self._buf[int(self._pos) + drop :]
                self._pos = self._pos - int(self._pos)
                self.overruns += 1

    def pull(self, n: int) -> Float:
        with self._lock:
            fill = len(self._buf) - self._pos
            ratio = self.steering.update(fill, n)
            if self._pos + ratio * (n - 1) + 1 >= len(self._buf) and fill - 1 >= 0.75 * n:
                # Slightly short (a late producer callback): spread what is there over this pull
                # (up to 25 % slower for one 5 ms period: a tiny pitch dip) instead of inserting silence.
                ratio = (len(self._buf) - 1 - self._pos) / n
                self.stretches += 1
            if len(self._buf) < 2 or self._pos + ratio * (n - 1) + 1 >= len(self._buf):
                self.underruns += 1
                out = np.zeros(n)
                avail = max(0, len(self._buf) - int(self._pos))
                take = min(n, avail)
                out[:take] = self._buf[int(self._pos) : int(self._pos) + take]
                self._buf = np.zeros(0)
                self._pos = 0.0
                return out
            out, self._buf, self._pos = _read(self._buf, self._pos, ratio, n)
            return out


def _read(buf: Float, pos: float, ratio: float, count: int) -> tuple[Float, Float, float]:
    """``count`` samples read from ``buf`` from ``pos`` on, ``ratio`` apart (linear interpolation;
    the caller keeps a right neighbour in ``buf``): the samples, what is left of ``buf``, and the
    read position in it."""
    positions = pos + ratio * np.arange(count)
    base = positions.astype(np.int64)
    frac = positions - base
    out = (1 - frac) * buf[base] + frac * buf[base + 1]
    pos += ratio * count
    consumed = int(pos)
    return out, buf[consumed:], pos - consumed
