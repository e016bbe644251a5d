"""Speech for recording tests on real calls: a turn-taking conversation, and STOI after alignment.

The two sides take turns (espeak-ng voices, short call-centre lines from tests/audio/conversations)
with gaps long enough that the start-up skew between the two players (the customer's baresip
starts with the call's media, the agent's player a moment later) does not make them overlap.

``aligned_stoi`` lines a recorded channel up with what was played and measures STOI over the
recording's time line, a span left out (the paused span: silence by design). A real call's time
line is not one fixed shift: a softphone's playout moves by a few ms between talk spurts (its
jitter buffer, its timer under load; 1-5 ms measured here), and espeak's nearly constant pitch
gives the cross-correlation teeth one pitch period (4-8 ms) apart, so a single whole-file peak
can land on the wrong tooth (seen: 4 ms off, STOI 0.944 instead of 0.971). The pulse backend's drift
resampler also steers the far end (the right channel) by up to 2000 ppm. So the shift is found
coarsely on envelopes (no pitch teeth), then refined in 200 ms windows, median-filtered and held
as a slowly moving track (whole samples, no interpolation of the reference). Only the time line
is followed: every loss, gap or distortion in the recording still counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import median_filter
from scipy.signal import fftconvolve, resample_poly

from tests.audio.conversations import AGENT_LINES, CUSTOMER_LINES
from tests.bench.audio import scenes

Float = NDArray[np.float64]
RATE = 16000  # STOI's own rate is 10 kHz: 16 kHz keeps all it looks at
PEAK = 0.35  # each talker's peak: the agent and the echo of the customer share the room sink
ENVELOPE_RATE = 400  # coarse alignment on 2.5 ms envelope samples
REFINE_MS = 15.0  # the local shift is searched this far either side of the coarse one
WINDOW_S = 0.2  # local alignment windows (half overlapping)
MIN_R = 0.5  # a window whose best match correlates less (double talk, a gap) sets no shift
MEDIAN = 5  # local shifts are median-filtered over this many windows (no pitch-tooth outliers)


def conversation(seconds: float, seed: int, gap: tuple[float, float] = (0.5, 0.8)) -> tuple[Float, Float]:
    """(agent, customer) at 16 kHz, ``seconds`` long: the agent opens, then each answers in turn."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    sides = (np.zeros(n), np.zeros(n))
    lines = (AGENT_LINES, CUSTOMER_LINES)
    voices = ("en-gb", "en-us+f3")
    pos = int(0.3 * RATE)
    turn = 0
    while pos < n:
        who = turn % 2
        utterance = scenes.speech(lines[who][(turn // 2) % len(lines[who])], voices[who], speed=175)
        loud = np.flatnonzero(np.abs(utterance) > 1e-3)
        utterance = utterance[loud[0] : loud[-1] + 1]
        utterance = PEAK * utterance / np.max(np.abs(utterance))
        end = min(n, pos + len(utterance))
        sides[who][pos:end] = utterance[: end - pos]
        pos = end + int(rng.uniform(*gap) * RATE)
        turn += 1
    return sides


@dataclass
class Intelligibility:
    stoi: float
    lag_ms: float  # where the recording's start falls in what was played (coarse, whole file)
    moves_ms: tuple[float, float] = (0.0, 0.0)  # the smoothed local track's range about lag_ms
    windows: int = 0  # windows the local alignment was found in

    def __str__(self) -> str:
        low, high = self.moves_ms
        track = f"moving {low:+.1f}..{high:+.1f} ms over {self.windows} windows"
        return f"STOI {self.stoi:.3f} (lag {self.lag_ms:.1f} ms, {track})"


def to_rate(x: Float, rate: int) -> Float:
    x = np.asarray(x, np.float64)
    g = gcd(rate, RATE)
    return resample_poly(x, RATE // g, rate // g) if rate != RATE else x


def _envelope(x: Float) -> Float:
    step = RATE // ENVELOPE_RATE
    n = len(x) // step * step
    return np.sqrt(np.mean(x[:n].reshape(-1, step) ** 2, axis=1))


def coarse_lag(played: Float, recorded: Float) -> int:
    """The shift L with recorded[n] ~ played[n + L] (either sign), to an envelope sample."""
    p, r = _envelope(played), _envelope(recorded)
    p, r = p - p.mean(), r - r.mean()
    corr = fftconvolve(p, r[::-1])  # index k: L = k - (len(r) - 1)
    return (int(np.argmax(corr)) - (len(r) - 1)) * (RATE // ENVELOPE_RATE)


def shifted(played: Float, lag: int, n: int) -> Float:
    """played[i + lag] for i in 0..n-1, zeros outside."""
    out = np.zeros(n)
    lo, hi = max(0, -lag), min(n, len(played) - lag)
    if hi > lo:
        out[lo:hi] = played[lo + lag : hi + lag]
    return out


def local_moves(reference: Float, recorded: Float) -> tuple[list[int], list[int]]:
    """(window centres, shifts): per window where ``reference`` speaks and the recording matches
    it (r >= MIN_R), the shift (samples) that lines the recording up with it best."""
    win, search = int(WINDOW_S * RATE), int(REFINE_MS * RATE / 1000)
    peak = np.max(np.abs(reference)) + 1e-12
    centres, moves = [], []
    for start in range(search, len(recorded) - win - search, win // 2):
        ref = reference[start : start + win]
        if np.sqrt(np.mean(ref**2)) < 0.03 * peak:
            continue
        seg = recorded[start - search : start + win + search]
        corr = np.correlate(seg, ref, "valid")  # index j: recorded[start - search + j] ~ ref[0]
        j = int(np.argmax(corr))
        match = seg[j : j + win]
        if corr[j] < MIN_R * np.sqrt(np.sum(ref**2) * np.sum(match**2)):
            continue
        centres.append(start + win // 2)
        moves.append(j - search)
    return centres, moves


def aligned_stoi(
    played: Float, played_rate: int, recorded: Float, recorded_rate: int, skip_s: tuple[float, float] | None = None
) -> Intelligibility:
    """STOI of a recorded channel against what was played, lined up by a slowly moving shift;
    the reference is zeroed over ``skip_s`` (seconds of the recording), so STOI leaves that span
    out (its frames are silent in the reference)."""
    from pystoi import stoi  # type: ignore[import-not-found]

    ref, rec = to_rate(played, played_rate), to_rate(recorded, recorded_rate)
    lag = coarse_lag(ref, rec)
    centres, moves = local_moves(shifted(ref, lag, len(rec)), rec)
    n = np.arange(len(rec))
    found = len(moves)
    if not found:
        centres, moves = [0], [0]
    smooth = median_filter(np.array(moves, float), size=MEDIAN, mode="nearest")
    track = np.rint(np.interp(n, centres, smooth)).astype(np.int64)  # held flat beyond the ends
    # reference[n] = ref[n + lag - track[n]]: the recording's sample n came from there.
    source = n + lag - track
    inside = (source >= 0) & (source < len(ref))
    reference = np.zeros(len(rec))
    reference[inside] = ref[source[inside]]
    if skip_s is not None:
        reference[max(0, int(skip_s[0] * RATE)) : max(0, int(skip_s[1] * RATE))] = 0.0
    low, high = float(np.min(smooth)), float(np.max(smooth))
    return Intelligibility(
        float(stoi(reference, rec, RATE, extended=False)), lag * 1000 / RATE,
        (low * 1000 / RATE, high * 1000 / RATE), found,
    )  # fmt: skip
