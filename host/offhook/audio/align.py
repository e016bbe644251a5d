"""The echo reference for each microphone frame: what the headset played a fixed number of samples
earlier. No I/O: the real-time backends feed it what they played and what the microphone
captured, and clean what it hands back.

- *Played ring*: one second of what the headset was given, indexed by sample count. The mic
  takes its reference at a fixed offset (the *lag*) in samples, so a late or missing callback on
  either side costs zeros for that stretch, never a shift the canceller must re-learn.
- *Lock*: the first mic period sets the lag so its reference ends ``margin`` samples before the
  newest sample played. Only a jump beyond ``jump`` samples (a stream restarted) locks afresh.
- *Re-lock that cannot cascade*: when the reference was short for ``SHORT_PERIODS`` mic periods
  while playback kept running (it fell behind for good: a stalled stream loses the time it
  stalled, the headset plays everything that much later), the lag moves by the least shortfall
  over that run plus the margin: exactly the lasting shift, never more, so the reference still
  comes before its echo and the next periods are not short again. Periods in which nothing was
  played (a stall that a burst may still make up) do not count: moving then would misplace the
  reference once the burst comes, which is how re-locking afresh cascaded under load.
- *Waiting frames* (push model): a mic frame whose reference has not been played yet waits, at
  most ``MAX_WAITING`` frames, and none once the reference stream has delivered nothing for that
  long (gone).
- *Catch-up*: if a mic frame was still waiting at every reference period for a whole second, the
  least shortfall seen (plus the margin) is a lasting shift; the lag moves by that much, once.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float64]
Pair = tuple[Float, Float]  # a mic frame and its echo reference


class ReferenceAligner:
    MAX_WAITING = 5  # mic frames held for their echo reference: 50 ms at most
    CATCH_UP_PERIODS = 100  # reference periods (one second) over which a lasting shortfall is seen
    SHORT_PERIODS = 3  # mic periods in a row short of reference before the lag moves

    def __init__(self, rate: int, margin: int, jump: int) -> None:
        self.margin = margin
        self.jump = jump
        self._played = np.zeros(rate)
        self._played_total = 0
        # The played ring is written by the playback side and read by the mic side, which are
        # different callback threads with PortAudio.
        self._lock = threading.Lock()
        self._mic_total = 0
        self.lag: int | None = None  # mic sample index minus its reference's index
        self._short_run: list[int] = []  # shortfalls of the current run of short mic periods
        self._played_at_take = 0
        self._waiting: deque[Float] = deque()
        self._mic_since_reference = 0
        self._least_shortfall: int | None = None  # over the current CATCH_UP_PERIODS
        self._shortfall_periods = 0
        self.locks = 0  # fresh locks (start-up, jumps)
        self.relocks = 0  # moves after a run of short periods
        self.missing = 0  # mic periods whose reference was not (all) played yet: zeros
        self.catch_ups = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def played(self, frame: Float) -> None:
        """Keep what the headset was given to play."""
        size, count = len(self._played), len(frame)
        with self._lock:
            start = self._played_total % size
            first = min(count, size - start)
            self._played[start : start + first] = frame[:first]
            self._played[: count - first] = frame[first:]
            self._played_total += count

    def take(self, count: int) -> Float:
        """The echo reference for the next ``count`` mic samples. Samples not played yet are zeros."""
        size = len(self._played)
        with self._lock:
            played = self._played_total
            wanted = self._mic_total + count - played + self.margin
            if self.lag is None or abs(wanted - self.lag) > self.jump:
                self.lag = wanted
                self.locks += 1
                self._short_run = []
            first = self._mic_total - self.lag
            self._mic_total += count
            out = np.zeros(count)
            lo, hi = max(first, played - size, 0), min(first + count, played)
            if hi > lo:  # one or two pieces (around the ring's end)
                start = lo % size
                head = min(hi - lo, size - start)
                out[lo - first : lo - first + head] = self._played[start : start + head]
                out[lo - first + head : hi - first] = self._played[: hi - lo - head]
            shortfall = first + count - hi
            running, self._played_at_take = played > self._played_at_take, played
            if shortfall <= 0:
                self._short_run = []
                return out
            self.missing += 1
            if running:
                self._short_run.append(shortfall)
            if len(self._short_run) >= self.SHORT_PERIODS:
                self.lag += min(self._short_run) + self.margin
                self.relocks += 1
                self._short_run = []
        return out

    def mic(self, frame: Float) -> list[Pair]:
        """Push model: a mic period arrived; returns the frames now ready, with their references."""
        self._waiting.append(frame)
        self._mic_since_reference += 1
        return self._drain()

    def reference_period(self, frame: Float) -> list[Pair]:
        """Push model: a reference period was played (recorded here); returns the mic frames now
        ready, with their references."""
        self.played(frame)
        self._mic_since_reference = 0
        ready = self._drain()
        return ready + self._catch_up()

    def _ready(self, count: int) -> bool:
        with self._lock:
            return self.lag is None or self._played_total >= self._mic_total + count - self.lag

    def _drain(self) -> list[Pair]:
        gone = self._mic_since_reference > self.MAX_WAITING
        ready = []
        waiting = self._waiting
        while waiting and (gone or len(waiting) > self.MAX_WAITING or self._ready(len(waiting[0]))):
            mic = waiting.popleft()
            ready.append((mic, self.take(len(mic))))
        return ready

    def _catch_up(self) -> list[Pair]:
        """Measured after each reference period: how many samples the newest waiting frame still
        lacks. In steady state nothing waits then, whatever order the streams deliver in."""
        shortfall = 0
        with self._lock:
            if self._waiting and self.lag is not None:
                needed = self._mic_total + sum(len(frame) for frame in self._waiting) - self.lag
                shortfall = needed - self._played_total
        least = self._least_shortfall
        self._least_shortfall = shortfall if least is None else min(least, shortfall)
        self._shortfall_periods += 1
        if self._shortfall_periods < self.CATCH_UP_PERIODS:
            return []
        lasting, self._least_shortfall, self._shortfall_periods = self._least_shortfall, None, 0
        if lasting <= 0:
            return []
        with self._lock:
            assert self.lag is not None
            self.lag += lasting + self.margin
        self.catch_ups += 1
        return self._drain()
