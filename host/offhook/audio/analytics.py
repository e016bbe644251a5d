"""Conversation analytics: talk and listen time, overtalk, dead air, response time and audio quality.

One :class:`ConversationMeter` per call, fed one frame at a time (10 ms or a multiple, 16 kHz)
with what the microphone chain already has, and the call's state flags; :meth:`~ConversationMeter.finish`
returns the call's :class:`CallFigures` (``as_dict()`` is JSON-able). ``offhook audio analyze``
runs the same meter over a pair of recordings.

Why this shape:

- Sans-IO and numpy only: the daemon, the real-time pipeline and the offline command feed the
  same object, so a figure means the same thing everywhere.
- Frames are buffered and voice activity decided per block (:mod:`offhook.audio.vad`), and the
  figures are computed once at call end from per-frame scores and flags (21 bytes a frame): bridging
  a gap needs the audio after it anyway, and events are then exact runs, not a state machine's
  approximation of them.
- Every figure is a function of the two activity tracks and the flags
  (:func:`conversation_figures`), so the tests and the bench compute the truth with the very same
  code from the clean voices: only the detector is being measured.
- Only connected time with the customer present counts: hold and the consult leg (the customer
  is on hold meanwhile) are excluded; muted speech is not talk the customer heard, it is counted
  as ``talking_while_muted_s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from offhook.audio import FRAME_MS, PROCESS_RATE
from offhook.audio.vad import Bool, PairVad, Smoothing, VadConfig, runs, smooth

Float = NDArray[np.float64]
FRAME_S = FRAME_MS / 1000
# The care rule for held customers: check in within two minutes. The same number as the daemon's
# [timers] hold_reminder_s default and metrics.store.LONG_HOLD_S (tests/audio/test_analytics.py
# keeps them equal); a hold longer than it is a missed check-in.
HOLD_REMINDER_S = 120.0
CLIP_LEVEL = 0.99  # a sample this close to full scale was (nearly) clipped


def is_missed_checkin(held_s: float, reminder_s: float = HOLD_REMINDER_S) -> bool:
    """A hold that lasted past the reminder without the agent resuming: the one definition of a
    long hold (reports, floor and call figures)."""
    return held_s > reminder_s


def missed_checkins(holds: Iterable[tuple[float, float]], reminder_s: float = HOLD_REMINDER_S) -> int:
    """Missed check-ins among ``(start, end)`` holds (any one clock, seconds), e.g. the rows of the
    metrics store's holds table ``(start_mono, end_mono)`` of one call."""
    return sum(1 for start, end in holds if is_missed_checkin(end - start, reminder_s))


@dataclass(frozen=True)
class AnalyticsConfig:
    overtalk_s: float = 0.5  # both talking at least this long is an overtalk
    dead_air_s: float = 3.0  # neither talking at least this long is dead air
    hold_reminder_s: float = HOLD_REMINDER_S
    vad: VadConfig = field(default_factory=VadConfig)
    smoothing: Smoothing = field(default_factory=Smoothing)  # the agent's turns
    # The reference is clean: no tail hidden under office noise, a little onset under the threshold.
    customer_smoothing: Smoothing = field(default_factory=lambda: Smoothing(min_frames=5, pre_frames=2, post_frames=0))


@dataclass(frozen=True)
class Event:
    """An overtalk or a dead air: seconds from the start of the recording (connected or not)."""

    start_s: float
    end_s: float
    started_by: str | None = None  # overtalk: "agent", "customer" or "both" (same frame)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class AudioQuality:
    """dBFS levels so IT can find a bad headset or a noisy desk. None: not measurable in this call."""

    noise_floor_dbfs: float | None  # microphone, full band, while nobody talks
    clipping_pct: float  # microphone samples at full scale
    echo_reduction_db: float | None  # what the canceller removed while only the customer talked (None: no echo heard)
    agent_level_dbfs: float | None  # microphone while only the agent talked
    customer_level_dbfs: float | None  # echo reference while the customer talked


@dataclass(frozen=True)
class CallFigures:
    connected_s: float  # connected, hold and consult excluded: the base of every figure below
    hold_s: float
    agent_talk_s: float
    customer_talk_s: float
    agent_share: float | None  # agent talk over both sides' talk
    customer_share: float | None
    talking_while_muted_s: float
    overtalk_count: int
    overtalk_s: float
    overtalk_started_by_agent: int
    overtalk_started_by_customer: int
    dead_air_count: int
    dead_air_s: float
    dead_air_longest_s: float
    response_count: int
    response_median_s: float | None
    agent_longest_monologue_s: float
    customer_longest_monologue_s: float
    holds: int
    missed_checkins: int
    longest_hold_s: float
    quality: AudioQuality | None
    overtalks: list[Event] = field(default_factory=list)
    dead_airs: list[Event] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able: floats to three decimals (seconds to 1 ms), None where there is no value."""
        return _rounded(asdict(self))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def _owner(mask: Bool, index: int) -> int:
    """Start frame of the run of ``mask`` that contains ``index``."""
    before = np.flatnonzero(~mask[: index + 1])
    return int(before[-1]) + 1 if len(before) else 0


def _monologue(own: Bool, other: Bool, counted: Bool, max_gap: int) -> int:
    """Longest stretch of one side's turns with no word from the other side and no gap of
    ``max_gap`` frames or more (dead air) or of hold between them, in frames."""
    best = 0
    run_start = run_end = -1
    for start, end in runs(own):
        gap = slice(run_end, start)
        joined = run_end >= 0 and start - run_end < max_gap and not other[gap].any() and bool(counted[gap].all())
        if not joined:
            run_start = start
        run_end = end
        best = max(best, run_end - run_start)
    return best


def conversation_figures(
    agent: Bool,
    customer: Bool,
    connected: Bool | None = None,
    hold: Bool | None = None,
    muted: Bool | None = None,
    config: AnalyticsConfig | None = None,
    quality: AudioQuality | None = None,
    frame_s: float = FRAME_S,
) -> CallFigures:
    """Every figure from per-frame activity (turns, already smoothed) and flags (hold: the
    customer is on hold, consult included). Arrays of one length; None: all False (connected: all True)."""
    cfg = config or AnalyticsConfig()
    n = len(agent)
    agent = np.asarray(agent, dtype=bool)
    customer = np.asarray(customer, dtype=bool)
    if len(customer) != n:
        raise ValueError("activity tracks differ in length")
    connected = np.ones(n, dtype=bool) if connected is None else np.asarray(connected, dtype=bool)
    hold = np.zeros(n, dtype=bool) if hold is None else np.asarray(hold, dtype=bool) & connected
    muted = np.zeros(n, dtype=bool) if muted is None else np.asarray(muted, dtype=bool)
    counted = connected & ~hold
    heard = agent & counted & ~muted  # the agent as the customer heard them
    cust = customer & counted
    both = heard & cust
    neither = counted & ~heard & ~cust

    overtalks = []
    for start, end in runs(both):
        if (end - start) * frame_s + 1e-9 < cfg.overtalk_s:
            continue
        a0, c0 = _owner(heard, int(start)), _owner(cust, int(start))
        who = "agent" if a0 > c0 else "customer" if c0 > a0 else "both"
        overtalks.append(Event(float(start * frame_s), float(end * frame_s), who))
    dead_airs = [
        Event(float(start * frame_s), float(end * frame_s))
        for start, end in runs(neither)
        if (end - start) * frame_s + 1e-9 >= cfg.dead_air_s
    ]

    responses = []
    agent_starts = runs(heard)[:, 0]
    cust_runs = runs(cust)
    cust_starts = cust_runs[:, 0]
    for _, end in cust_runs:
        if end >= n or heard[end - 1]:
            continue  # the agent was already talking: an overtalk, not a response
        reply = agent_starts[np.searchsorted(agent_starts, end) :]
        again = cust_starts[np.searchsorted(cust_starts, end) :]
        if not len(reply) or (len(again) and again[0] < reply[0]) or not counted[end : reply[0]].all():
            continue
        responses.append(float((reply[0] - end) * frame_s))

    holds = [(float(start * frame_s), float(end * frame_s)) for start, end in runs(hold)]
    max_gap = max(1, round(cfg.dead_air_s / frame_s))
    agent_s = float(heard.sum()) * frame_s
    cust_s = float(cust.sum()) * frame_s
    talk = agent_s + cust_s
    return CallFigures(
        connected_s=float(counted.sum()) * frame_s,
        hold_s=float(hold.sum()) * frame_s,
        agent_talk_s=agent_s,
        customer_talk_s=cust_s,
        agent_share=agent_s / talk if talk else None,
        customer_share=cust_s / talk if talk else None,
        talking_while_muted_s=float((agent & counted & muted).sum()) * frame_s,
        overtalk_count=len(overtalks),
        overtalk_s=sum(e.duration_s for e in overtalks),
        overtalk_started_by_agent=sum(e.started_by == "agent" for e in overtalks),
        overtalk_started_by_customer=sum(e.started_by == "customer" for e in overtalks),
        dead_air_count=len(dead_airs),
        dead_air_s=sum(e.duration_s for e in dead_airs),
        dead_air_longest_s=max((e.duration_s for e in dead_airs), default=0.0),
        response_count=len(responses),
        response_median_s=float(np.median(responses)) if responses else None,
        agent_longest_monologue_s=_monologue(heard, cust, counted, max_gap) * frame_s,
        customer_longest_monologue_s=_monologue(cust, heard, counted, max_gap) * frame_s,
        holds=len(holds),
        missed_checkins=missed_checkins(holds, cfg.hold_reminder_s),
        longest_hold_s=max((end - start for start, end in holds), default=0.0),
        quality=quality,
        overtalks=overtalks,
        dead_airs=dead_airs,
    )


def _db(power: float) -> float | None:
    return 10 * math.log10(power) if power > 0 else None


class _Track:
    """A growing per-frame array (amortised appends without a Python list of floats)."""

    def __init__(self, dtype: type) -> None:
        self._data: NDArray[Any] = np.zeros(1024, dtype=dtype)
        self.size = 0

    def extend(self, values: NDArray[Any]) -> None:
        end = self.size + len(values)
        if end > len(self._data):
            self._data = np.concatenate((self._data, np.zeros(max(end, len(self._data)), dtype=self._data.dtype)))
        self._data[self.size : end] = values
        self.size = end

    @property
    def values(self) -> NDArray[Any]:
        return self._data[: self.size]


class ConversationMeter:
    """Streaming analytics for one call at 16 kHz.

    Per frame (10 ms, or any whole number of 10 ms frames) call :meth:`push` with the raw
    microphone, the echo canceller's output before the gate (its residual suppression done), the
    echo reference, the suppressor's residual echo power, and the call's flags; at call end,
    :meth:`finish`. Memory: 21 bytes kept per 10 ms frame (8 MB for an hour's call).
    """

    def __init__(self, config: AnalyticsConfig | None = None) -> None:
        self.config = config = config or AnalyticsConfig()
        self.frame = config.vad.frame
        self._block = config.vad.block
        self._vad = PairVad(config.vad)
        size = self._block * self.frame
        self._buf = np.zeros((3, size))  # cleaned, reference, microphone of the pending frames
        self._echo = np.zeros(self._block)
        self._pending = 0
        self._flags = _Track(np.uint8)  # bit 0 connected, 1 hold, 2 muted
        self._scores = _Track(np.float32)  # agent: level above floor (dB); customer the same
        self._customer_scores = _Track(np.float32)
        self._powers = _Track(np.float32)  # microphone, cleaned and reference power, rows of 3
        self._clipped = 0
        self._samples = 0

    def push(
        self,
        mic: Float,
        cleaned: Float,
        ref: Float,
        residual_echo: float = 0.0,
        *,
        connected: bool = True,
        hold: bool = False,
        consult: bool = False,
        muted: bool = False,
    ) -> None:
        """One or more whole 10 ms frames. ``cleaned``: the canceller's output, before gate, noise
        suppression and mute; ``ref``: the echo reference; ``residual_echo``: the suppressor's
        ``residual_power``. ``consult`` puts the customer on hold for these figures."""
        n = len(mic)
        if n == 0 or n % self.frame or len(cleaned) != n or len(ref) != n:
            raise ValueError(f"frames must be whole {FRAME_MS} ms frames ({self.frame} samples) of equal length")
        frames = n // self.frame
        flag = (1 if connected else 0) | (2 if hold or consult else 0) | (4 if muted else 0)
        self._flags.extend(np.full(frames, flag, dtype=np.uint8))
        for k in range(frames):
            sl = slice(k * self.frame, (k + 1) * self.frame)
            lo = self._pending * self.frame
            self._buf[0, lo : lo + self.frame] = cleaned[sl]
            self._buf[1, lo : lo + self.frame] = ref[sl]
            self._buf[2, lo : lo + self.frame] = mic[sl]
            self._echo[self._pending] = residual_echo
            self._pending += 1
            if self._pending == self._block:
                self._decide()

    def _decide(self) -> None:
        k = self._pending
        if not k:
            return
        frames = self._buf[:, : k * self.frame].reshape(3, k, self.frame)
        agent, customer = self._vad.process(frames[0], frames[1], self._echo[:k])
        self._scores.extend(agent.astype(np.float32))
        self._customer_scores.extend(customer.astype(np.float32))
        powers = np.einsum("skn,skn->ks", frames, frames) / self.frame
        self._powers.extend(powers[:, [2, 0, 1]].reshape(-1).astype(np.float32))
        self._clipped += int(np.count_nonzero(np.abs(frames[2]) >= CLIP_LEVEL))
        self._samples += k * self.frame
        self._pending = 0

    def activity(self) -> tuple[Bool, Bool]:
        """The agent's and the customer's turns so far (frames), as the figures use them."""
        self._decide()
        cfg = self.config
        agent = smooth(self._scores.values > cfg.vad.open_db, cfg.smoothing)
        customer = smooth(self._customer_scores.values > cfg.vad.customer_open_db, cfg.customer_smoothing)
        return agent, customer

    def finish(self) -> CallFigures:
        """The call's figures (the meter may be fed on and asked again: figures so far)."""
        agent, customer = self.activity()
        flags = self._flags.values
        connected = (flags & 1).astype(bool)
        hold = (flags & 2).astype(bool)
        muted = (flags & 4).astype(bool)
        quality = self._quality(agent, customer, connected & ~hold)
        return conversation_figures(agent, customer, connected, hold, muted, self.config, quality)

    def _quality(self, agent: Bool, customer: Bool, counted: Bool) -> AudioQuality:
        powers = self._powers.values.reshape(-1, 3).astype(np.float64)
        mic, cleaned, ref = powers.T
        quiet = counted & ~agent & ~customer
        far_only = counted & customer & ~agent
        near_only = counted & agent & ~customer
        noise = float(np.median(mic[quiet])) if quiet.any() else 0.0
        echo = None
        if far_only.sum() >= 100:  # a second of the customer alone
            # The echo over the room's noise, before and after the canceller, each over its own
            # background: the chain's high-pass takes the rumble out of the cleaned signal, and
            # comfort noise keeps the rest. Echo quieter than the noise (a good headset) has no
            # reduction to report; a residual under the noise counts as 13 dB under it.
            noise_out = float(np.median(cleaned[quiet])) if quiet.any() else 0.0
            echo_in = float(mic[far_only].mean()) - noise
            echo_out = max(float(cleaned[far_only].mean()) - noise_out, 0.05 * noise_out, 1e-12)
            echo = 10 * math.log10(echo_in / echo_out) if echo_in > noise else None
        return AudioQuality(
            noise_floor_dbfs=_db(noise),
            clipping_pct=100.0 * self._clipped / self._samples if self._samples else 0.0,
            echo_reduction_db=echo,
            agent_level_dbfs=_db(float(mic[near_only].mean())) if near_only.any() else None,
            customer_level_dbfs=_db(float(ref[customer & counted].mean())) if (customer & counted).any() else None,
        )


def analyze(
    mic: Float,
    ref: Float,
    rate: int = PROCESS_RATE,
    config: AnalyticsConfig | None = None,
    *,
    tail_ms: float = 128.0,
    hold: Bool | None = None,
    muted: Bool | None = None,
) -> CallFigures:
    """A pair of recordings (the whole file is connected time): offhook's chain without noise suppression and gate
    (echo canceller and residual echo suppression), then the meter. ``hold``/``muted``: optional
    per-frame flags (the tests' scripted calls)."""
    from offhook.audio.aec import AecConfig
    from offhook.audio.chain import ChainConfig, process_signals
    from offhook.audio.resample import FACTOR, Downsampler

    if len(mic) != len(ref):
        raise ValueError("mic and reference must have the same length")
    if rate not in (PROCESS_RATE, PROCESS_RATE * FACTOR):
        raise ValueError(f"unsupported rate {rate}: use 16000 or 48000")
    mic = np.asarray(mic, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    chain = ChainConfig(rate=rate, ns=False, gate=False, aec_config=AecConfig(tail_ms=tail_ms))
    cleaned = process_signals(mic, ref, chain)
    if rate != PROCESS_RATE:
        usable = len(mic) // FACTOR * FACTOR
        mic, ref, cleaned = (Downsampler().process(x[:usable]) for x in (mic, ref, cleaned))
    meter = ConversationMeter(config)
    n = meter.frame
    frames = len(mic) // n
    for k in range(frames):
        sl = slice(k * n, (k + 1) * n)
        meter.push(
            mic[sl],
            cleaned[sl],
            ref[sl],
            hold=bool(hold[k]) if hold is not None and k < len(hold) else False,
            muted=bool(muted[k]) if muted is not None and k < len(muted) else False,
        )
    return meter.finish()
