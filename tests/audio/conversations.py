"""Scripted calls with known truth for the conversation analytics (tests and `make bench`).

Two espeak-ng voices take turns from a script with set overlaps, pauses, a hold (or a consult
with a supervisor's voice on the line) and optionally a stretch of muted talk. The customer's
voice is what the softphone plays (the echo reference, with or without line noise); the
microphone hears the agent, the customer's echo through a room (tests/bench/audio/scenes.py:
headset, office desk speakerphone, meeting room) and office noise. Everything follows from the
:class:`Spec`, so every run and every detector sees the same samples.

Truth is each voice's clean signal: active where its 20 ms energy is within 35 dB of its peak,
with gaps under 300 ms bridged; the figures follow from it through the same
:func:`offhook.audio.analytics.conversation_figures` that the meter uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.signal import fftconvolve

from offhook.audio.analytics import AnalyticsConfig, CallFigures, conversation_figures
from offhook.audio.vad import bridge
from tests.bench.audio import scenes

Float = NDArray[np.float64]
Bool = NDArray[np.bool_]
RATE = scenes.RATE
FRAME = RATE // 100
TRUTH_RANGE_DB = 35.0
BRIDGE_FRAMES = 30

AGENT_LINES = (
    "Thank you for calling, my name is Sam, how can I help you today?",
    "Of course, can you give me your order number, please?",
    "I can see the order here, it left our depot yesterday evening.",
    "The courier expects to deliver it tomorrow before noon.",
    "I am sorry for the delay, I will add a note to your account.",
    "Let me check the tracking details for you.",
    "Yes, that is the right address, flat two, forty one Station Road.",
    "I can arrange a refund to your card, it takes three to five working days.",
    "Would you like me to send the confirmation by email?",
    "That is all done now, you will get a message in a few minutes.",
    "Is there anything else I can help you with today?",
    "I understand, that must be frustrating.",
    "Right, and when did you first notice the problem?",
    "Okay, I have updated your phone number on the account.",
)
CUSTOMER_LINES = (
    "Hello, I am calling about my order, it was supposed to arrive on Monday.",
    "It is four seven two, nine nine one, five.",
    "I have been waiting for more than a week now, and nobody answered my emails.",
    "The parcel was sent from the warehouse in Leeds, at least that is what the website said.",
    "Yes please, that would be great.",
    "If it cannot be delivered this week, I would like a refund to my credit card.",
    "No, I was at home all day and nobody rang the bell.",
    "Can you tell me which courier it is?",
    "My postcode is L S six, four J T.",
    "Thank you, I will wait for the confirmation message this afternoon.",
    "Sorry, could you repeat that?",
    "That is fine, as long as it comes this week.",
)
HOLD_LINES = ("Let me check that for you, I will put you on hold for a moment.",)
RESUME_LINES = ("Thank you for holding, I have the answer for you.",)
ASIDE_LINES = (  # the agent to a colleague while the customer is on hold or the mic is muted
    "Hey, do you know where the refund form is?",
    "Never mind, I found it on the shared drive.",
)
SUPERVISOR_LINES = ("Yes, you can approve that refund, go ahead.",)
AGENT_VOICES = ("en-gb", "en-us+m1", "en-gb-scotland", "en-us+m5")
CUSTOMER_VOICES = ("en-us+f3", "en-gb-x-rp+f4", "en-029+f2", "en-us-nyc")
SUPERVISOR_VOICE = "en-gb+m4"
ERL_DB = {"headset": 25.0, "office": 8.0, "meeting": 12.0}  # echo below the reference, by room


@dataclass(frozen=True)
class Spec:
    seed: int
    agent_voice: str = AGENT_VOICES[0]
    customer_voice: str = CUSTOMER_VOICES[0]
    room: str = "headset"
    snr_db: float = 25.0  # the agent's speech over the office noise (active speech level)
    turns: int = 10
    overlaps: int = 2  # turn changes where the next speaker starts 0.9-1.5 s early
    pauses: int = 1  # turn changes after 3.8-5.5 s of silence
    hold_s: float = 0.0  # 0: no hold
    consult: bool = False  # the hold is a consult: the supervisor's voice on the line
    muted_talk: bool = False  # the agent mutes and talks during one customer turn
    line_noise_dbfs: float | None = None  # the reference's background (None: digital silence)
    customer_dbfs: float = -26.0  # the customer's active speech level on the reference
    silent_agent: bool = False  # the agent never talks: the microphone hears only echo and noise


@dataclass
class Conversation:
    spec: Spec
    mic: Float
    ref: Float
    hold: Bool  # per frame: the customer is on hold (or the agent in the consult leg)
    muted: Bool
    agent_truth: Bool  # per frame, 20 ms energy within 35 dB of the voice's peak, gaps bridged
    customer_truth: Bool
    script: list[tuple[str, float, float]] = field(default_factory=list)  # who, start s, end s
    tail_ms: float = 128.0  # the echo tail to configure the canceller with (the room's, as the bench's scenes)

    @property
    def seconds(self) -> float:
        return len(self.mic) / RATE

    def truth(self, config: AnalyticsConfig | None = None) -> CallFigures:
        return conversation_figures(
            self.agent_truth, self.customer_truth, None, self.hold, self.muted, config or AnalyticsConfig()
        )


def _trimmed(x: Float) -> Float:
    """An utterance without espeak's leading and trailing silence."""
    loud = np.flatnonzero(np.abs(x) > 1e-3 * np.max(np.abs(x)))
    return x[loud[0] : loud[-1] + 1]


def voice_truth(clean: Float, frames: int) -> Bool:
    """Active frames of a voice: 20 ms energy (centred on the 10 ms frame) within 35 dB of its peak."""
    padded = np.concatenate((np.zeros(FRAME // 2), clean, np.zeros(2 * FRAME)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * FRAME)[::FRAME][:frames]
    energy = np.einsum("ij,ij->i", windows, windows)
    active = energy >= energy.max() * 10 ** (-TRUTH_RANGE_DB / 10) if energy.max() > 0 else energy > 0
    return bridge(active, BRIDGE_FRAMES)


def _level(x: Float, dbfs: float) -> Float:
    loud = np.abs(x) > 1e-3
    rms = float(np.sqrt(np.mean(x[loud] ** 2))) if loud.any() else 1.0
    return x * 10 ** (dbfs / 20) / rms


def build(spec: Spec) -> Conversation:
    """One scripted call, deterministic in ``spec``."""
    rng = np.random.default_rng(spec.seed)
    # Which turn changes overlap or pause; the hold (if any) comes after the middle turn.
    changes = rng.permutation(np.arange(1, spec.turns))
    overlap_at = set(changes[: spec.overlaps].tolist())
    pause_at = set(changes[spec.overlaps : spec.overlaps + spec.pauses].tolist())
    hold_after = spec.turns // 2 if spec.hold_s > 0 else -1
    agent_lines = list(rng.permutation(AGENT_LINES))
    customer_lines = list(rng.permutation(CUSTOMER_LINES))

    placed: list[tuple[str, Float, int]] = []  # who ("agent", "customer", "aside", "supervisor"), audio, start
    script: list[tuple[str, float, float]] = []
    holds: list[tuple[int, int]] = []
    mutes: list[tuple[int, int]] = []
    pos = int(0.6 * RATE)
    end = pos
    last_len = 0
    who = "customer" if spec.seed % 2 else "agent"
    for turn in range(spec.turns):
        lines = agent_lines if who == "agent" else customer_lines
        voice = spec.agent_voice if who == "agent" else spec.customer_voice
        audio = _trimmed(scenes.speech(str(lines[turn % len(lines)]), voice))
        if turn:
            if turn in overlap_at:
                early = rng.uniform(0.9, 1.5)
                start = end - int(min(early, 0.45 * len(audio) / RATE, 0.45 * last_len / RATE) * RATE)
            elif turn in pause_at:
                start = end + int(rng.uniform(3.8, 5.5) * RATE)
            else:
                start = end + int(rng.uniform(0.45, 1.4) * RATE)
        else:
            start = pos
        placed.append((who, audio, start))
        script.append((who, start / RATE, (start + len(audio)) / RATE))
        end = max(end, start + len(audio))
        last_len = len(audio)
        if spec.muted_talk and who == "customer" and not mutes and len(audio) > 3 * RATE:
            aside = _trimmed(scenes.speech(ASIDE_LINES[1], spec.agent_voice))[: len(audio) - RATE]
            placed.append(("aside", aside, start + RATE // 2))
            mutes.append((start + RATE // 4, start + RATE // 2 + len(aside) + RATE // 4))
        if turn == hold_after:
            line = _trimmed(scenes.speech(HOLD_LINES[0], spec.agent_voice))
            start = end + int(0.8 * RATE)
            placed.append(("agent", line, start))
            hold_start = start + len(line) + int(0.5 * RATE)
            hold_end = hold_start + int(spec.hold_s * RATE)
            inner = hold_start + int(0.8 * RATE)
            aside = _trimmed(scenes.speech(ASIDE_LINES[0], spec.agent_voice))
            placed.append(("aside", aside, inner))
            if spec.consult:
                sup = _trimmed(scenes.speech(SUPERVISOR_LINES[0], SUPERVISOR_VOICE))
                placed.append(("supervisor", sup, inner + len(aside) + int(0.5 * RATE)))
            holds.append((hold_start, hold_end))
            resume = _trimmed(scenes.speech(RESUME_LINES[0], spec.agent_voice))
            start = hold_end + int(0.6 * RATE)
            placed.append(("agent", resume, start))
            end = start + len(resume)
            who = "agent"
        who = "customer" if who == "agent" else "agent"

    total = end + int(1.2 * RATE)
    total -= total % FRAME
    agent = np.zeros(total)
    far = np.zeros(total)
    for kind, audio, start in placed:
        if spec.silent_agent and kind in ("agent", "aside"):
            continue
        target = far if kind in ("customer", "supervisor") else agent
        stop = min(total, start + len(audio))
        target[start:stop] += audio[: stop - start]
    frames = total // FRAME
    agent_truth = voice_truth(agent, frames)
    customer_truth = voice_truth(far, frames)

    noise_rng = np.random.default_rng(spec.seed + 1000)
    ref = _level(far, spec.customer_dbfs)
    if spec.line_noise_dbfs is not None:
        line = scenes.pink_noise(total, noise_rng)
        ref = ref + line * 10 ** (spec.line_noise_dbfs / 20) / np.std(line)
    rir, noise_rir, tail_ms, delay_ms, _ = scenes.room_setup(spec.room, spec.seed)
    echo = fftconvolve(scenes.loudspeaker(ref), rir)[:total]
    delay = int(delay_ms * RATE / 1000)
    echo = np.concatenate((np.zeros(delay), echo))[:total]
    echo *= 10 ** (-ERL_DB[spec.room] / 20) * scenes.rms(ref[np.abs(far) > 1e-3]) / scenes.rms(echo[echo != 0])
    near = _level(agent, -24.0)
    # Whole seconds: scenes.talker() takes seconds and int(n / RATE * RATE) can come out one short.
    noise = scenes.office_noise(-(-total // RATE) * RATE, spec.seed, noise_rir)[:total]
    noise *= 10 ** ((-24.0 - spec.snr_db) / 20) / scenes.rms(noise)
    mic = np.clip(near + echo + noise, -1.0, 1.0 - 2**-15)

    def mask(spans: list[tuple[int, int]]) -> Bool:
        out = np.zeros(frames, dtype=bool)
        for lo, hi in spans:
            out[lo // FRAME : -(-hi // FRAME)] = True
        return out

    return Conversation(spec, mic, ref, mask(holds), mask(mutes), agent_truth, customer_truth, script, tail_ms)


def bench_specs(count: int = 32) -> list[Spec]:
    """Varied calls for `make bench`: voices, rooms, noise, overlap and pause patterns, holds."""
    specs = []
    rooms = tuple(scenes.ROOMS)
    for i in range(count):
        specs.append(
            Spec(
                seed=100 + i,
                agent_voice=AGENT_VOICES[i % len(AGENT_VOICES)],
                customer_voice=CUSTOMER_VOICES[(i // 2) % len(CUSTOMER_VOICES)],
                room=rooms[i % 3],
                snr_db=(15.0, 20.0, 25.0, 30.0)[(i // 3) % 4],
                turns=10 + i % 5,
                overlaps=(1, 2, 3)[i % 3],
                pauses=(1, 2, 0, 1)[i % 4],
                hold_s=(0.0, 8.0, 15.0)[i % 3],
                consult=i % 6 == 4,
                muted_talk=i % 4 == 1,
                line_noise_dbfs=(None, -60.0, -50.0)[(i // 2) % 3],
                customer_dbfs=(-20.0, -26.0, -32.0)[(i // 4) % 3],
            )
        )
    return specs
