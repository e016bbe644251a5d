"""Deterministic echo-cancellation scenarios: espeak-ng speech, image-method rooms, office noise.

Everything is generated from fixed texts, voices and seeds, so every run (and every system
compared in one run) sees the same samples. Speech is cached under ``.make/audio-cache``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.signal import fftconvolve, lfilter, resample_poly

Float = NDArray[np.float64]
RATE = 16000
REPO = Path(__file__).resolve().parents[3]
CACHE = REPO / ".make" / "audio-cache"

FAR_TEXTS = (
    "Hello, I am calling about my order, it was supposed to arrive on Monday and it is still not here.",
    "I have been waiting for more than a week now, and nobody answered my emails.",
    "Could you please check the tracking number for me? It starts with four seven two.",
    "The parcel was sent from the warehouse in Leeds, at least that is what the website said.",
    "If it cannot be delivered this week, I would like a refund to my credit card.",
    "Thank you, I will wait for the confirmation message this afternoon.",
)
NEAR_TEXTS = (
    "Of course, let me look that up for you. Can you confirm your postcode, please?",
    "I can see the order here, it left our depot yesterday evening.",
    "The courier expects to deliver it tomorrow before noon.",
    "I am sorry for the delay, I will add a note to your account.",
    "Is there anything else I can help you with today?",
)
BABBLE_TEXTS = (
    "We need the quarterly figures by Friday, can you send them over.",
    "No, the meeting moved to room three, after lunch.",
    "Has anybody seen the stapler, it was on my desk this morning.",
)


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speech(text: str, voice: str, speed: int = 160) -> Float:
    """One utterance from espeak-ng at 16 kHz, peak-normalised to 0.5 (cached on disk)."""
    key = hashlib.sha256(f"{voice}|{speed}|{text}".encode()).hexdigest()[:16]
    path = CACHE / f"{key}.wav"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(tmp), text], check=True)
        tmp.replace(path)
    with wave.open(str(path)) as handle:
        raw = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2").astype(np.float64) / 32768
        rate = handle.getframerate()
    audio = resample_poly(raw, RATE, rate) if rate != RATE else raw
    return 0.5 * audio / (np.max(np.abs(audio)) + 1e-12)


def talker(
    texts: tuple[str, ...],
    voice: str,
    seconds: float,
    seed: int,
    pause: tuple[float, float] = (0.25, 0.6),
    speed: int = 160,
) -> Float:
    """A talker filling ``seconds`` with utterances separated by natural pauses."""
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    out = np.zeros(total)
    pos = int(rng.uniform(*pause) * RATE)
    index = 0
    while pos < total:
        utterance = speech(texts[index % len(texts)], voice, speed)
        index += 1
        end = min(total, pos + len(utterance))
        out[pos:end] = utterance[: end - pos]
        pos = end + int(rng.uniform(*pause) * RATE)
    return out


def image_rir(
    room: tuple[float, float, float],
    source: tuple[float, float, float],
    mic: tuple[float, float, float],
    rt60: float,
    length_s: float,
) -> Float:
    """Room impulse response by the image method (Allen & Berkley), fractional delays by windowed sinc."""
    c = 343.0
    lx, ly, lz = room
    volume = lx * ly * lz
    surface = 2 * (lx * ly + lx * lz + ly * lz)
    absorption = min(0.99, 0.161 * volume / (surface * rt60))
    beta = np.sqrt(1 - absorption)
    length = int(length_s * RATE)
    max_dist = length_s * c
    orders = [int(np.ceil(max_dist / (2 * d))) + 1 for d in room]
    axes = []
    for dim, order in zip(range(3), orders, strict=True):
        n = np.arange(-order, order + 1)
        # Images along one axis: 2nL +/- s, with reflection counts |n - q| + |n| for q in {0, 1}.
        pos0 = 2 * n * room[dim] + source[dim] - mic[dim]
        pos1 = 2 * n * room[dim] - source[dim] - mic[dim]
        refl0 = 2 * np.abs(n)
        refl1 = np.abs(2 * n - 1)
        axes.append((np.concatenate((pos0, pos1)), np.concatenate((refl0, refl1))))
    (px, rx), (py, ry), (pz, rz) = axes
    dist = np.sqrt(px[:, None, None] ** 2 + py[None, :, None] ** 2 + pz[None, None, :] ** 2)
    refl = rx[:, None, None] + ry[None, :, None] + rz[None, None, :]
    keep = dist < max_dist
    dist, refl = dist[keep], refl[keep]
    gain = beta**refl / (4 * np.pi * np.maximum(dist, 0.05))
    delay = dist / c * RATE
    rir = np.zeros(length + 32)
    taps = np.arange(-8, 8)
    base = np.floor(delay).astype(int)
    frac = delay - base
    for tap in taps:
        idx = base + tap
        weight = np.sinc(tap - frac) * (0.5 + 0.5 * np.cos(np.pi * (tap - frac) / 9))
        ok = (idx >= 0) & (idx < len(rir))
        np.add.at(rir, idx[ok], gain[ok] * weight[ok])
    # Remove the propagation delay to the direct path: the bulk delay is applied separately.
    start = max(0, int(np.floor(np.min(delay))) - 8)
    rir = rir[start : start + length]
    return rir / np.max(np.abs(rir))


def headset_rir(seed: int) -> Float:
    """A headset's earpiece-to-boom-mic path: short (about 8 ms) and band-limited."""
    rng = np.random.default_rng(seed)
    n = int(0.008 * RATE)
    decay = np.exp(-np.arange(n) / (0.0015 * RATE))
    ir = rng.standard_normal(n) * decay
    ir[2] += 3.0
    b = np.array([0.2, 0.6, 0.2])
    ir = lfilter(b, [1.0], ir)
    return ir / np.max(np.abs(ir))


def pink_noise(n: int, rng: np.random.Generator) -> Float:
    white = rng.standard_normal(n + 2000)
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1, -2.494956002, 2.017265875, -0.522189400]
    return lfilter(b, a, white)[2000:]


def office_noise(n: int, seed: int, room_rir: Float) -> Float:
    """Stationary office background: pink noise plus distant babble, diffuse through the room."""
    rng = np.random.default_rng(seed)
    noise = pink_noise(n, rng)
    noise /= np.std(noise)
    babble = np.zeros(n)
    for i, voice in enumerate(("en-us+m3", "en-gb+f2", "en-us+m7")):
        babble += talker(BABBLE_TEXTS[i:] + BABBLE_TEXTS[:i], voice, n / RATE, seed + 11 * i, pause=(0.05, 0.3))
    babble = fftconvolve(babble, room_rir)[:n]
    babble /= np.std(babble) + 1e-12
    return noise + 0.5 * babble


def loudspeaker(x: Float, drive: float = 0.7) -> Float:
    """Mild loudspeaker non-linearity: soft saturation, a few % distortion at speech peaks."""
    return np.tanh(drive * x) / drive


def rms(x: Float) -> float:
    return float(np.sqrt(np.mean(x**2) + 1e-20))


@dataclass
class Scene:
    """One scenario: what the softphone plays (ref), what the mic hears, and the true parts."""

    name: str
    ref: Float
    mic: Float
    echo: Float
    near: Float
    noise: Float
    segments: dict[str, tuple[int, int]] = field(default_factory=dict)
    tail_ms: float = 128.0
    bulk_delay_ms: float = 0.0


def _mix(
    name: str,
    far: Float,
    near: Float,
    rirs: list[tuple[int, Float]],
    noise_rir: Float,
    delay_ms: float,
    snr_near_db: float,
    echo_over_noise_db: float,
    seed: int,
    nonlinear: bool,
) -> tuple[Float, Float, Float, Float]:
    n = len(far)
    played = loudspeaker(far) if nonlinear else far
    delay = int(delay_ms * RATE / 1000)
    echo = np.zeros(n)
    for i, (start, rir) in enumerate(rirs):
        end = rirs[i + 1][0] if i + 1 < len(rirs) else n
        part = fftconvolve(played, rir)[:n]
        echo[start:end] = part[start:end]
    echo = np.concatenate((np.zeros(delay), echo))[:n]
    noise = office_noise(n, seed, noise_rir)
    active = np.abs(far) > 0.01
    echo_level = rms(echo[np.roll(active, delay)]) if active.any() else rms(echo)
    noise *= echo_level / 10 ** (echo_over_noise_db / 20) / rms(noise)
    near_active = np.abs(near) > 0.01
    if near_active.any():
        near = near * rms(noise) * 10 ** (snr_near_db / 20) / rms(near[near_active])
    return echo, near, noise, played


def build_scene(room: str, seed: int = 7) -> Scene:
    """The standard scenario in one room: far single talk, double talk, near only, noise only."""
    seconds = {"fst": 8.0, "dt": 8.0, "near": 5.0, "noise": 3.0}
    n = int(sum(seconds.values()) * RATE)
    bounds: dict[str, tuple[int, int]] = {}
    pos = 0
    for key, sec in seconds.items():
        bounds[key] = (pos, pos + int(sec * RATE))
        pos += int(sec * RATE)
    far = np.zeros(n)
    near = np.zeros(n)
    far_talk = talker(FAR_TEXTS, "en-us+f3", 16.0, seed)
    far[: bounds["dt"][1]] = far_talk[: bounds["dt"][1]]
    near_talk = talker(NEAR_TEXTS, "en-gb", 13.0, seed + 1)
    near[bounds["dt"][0] : bounds["near"][1]] = near_talk[: bounds["near"][1] - bounds["dt"][0]]
    rir, noise_rir, tail, delay, snr = room_setup(room, seed)
    echo, near, noise, _ = _mix(room, far, near, [(0, rir)], noise_rir, delay, snr, 30.0, seed, True)
    mic = echo + near + noise
    return Scene(room, far, mic, echo, near, noise, bounds, tail, delay)


def build_path_change(room: str, seed: int = 9) -> Scene:
    """Far single talk for 12 s; the echo path changes (device moved) at 6 s."""
    n = 12 * RATE
    far = talker(FAR_TEXTS[2:] + FAR_TEXTS[:2], "en-us+f3", 12.0, seed)
    rir, noise_rir, tail, delay, _ = room_setup(room, seed)
    rir2, _, _, _, _ = room_setup(room, seed, moved=True)
    echo, _, noise, _ = _mix(
        room, far, np.zeros(n), [(0, rir), (6 * RATE, rir2)], noise_rir, delay, 30.0, 30.0, seed, True
    )
    return Scene(
        f"{room}-change",
        far,
        echo + noise,
        echo,
        np.zeros(n),
        noise,
        {"before": (0, 6 * RATE), "after": (6 * RATE, n)},
        tail,
        delay,
    )


ROOMS = ("headset", "office", "meeting")


def room_setup(room: str, seed: int, moved: bool = False) -> tuple[Float, Float, float, float, float]:
    """(echo RIR, noise RIR, tail ms for the cancellers, bulk delay ms, near SNR dB) of a room."""
    office = ((5.0, 4.0, 2.8), 0.35)
    meeting = ((7.0, 5.0, 3.0), 0.45)
    noise_rir = image_rir(office[0], (0.6, 3.2, 1.2), (2.5, 2.0, 1.2), office[1], 0.25)
    if room == "headset":
        return headset_rir(seed + (5 if moved else 0)), noise_rir, 64.0, 60.0, 30.0
    if room == "office":
        mic = (2.55, 2.0, 1.1) if moved else (2.3, 2.1, 1.1)
        return image_rir(office[0], (2.5, 2.3, 0.9), mic, office[1], 0.25), noise_rir, 256.0, 180.0, 25.0
    if room == "meeting":
        mic = (3.9, 2.2, 1.0) if moved else (3.4, 2.6, 1.0)
        return image_rir(meeting[0], (3.5, 2.5, 0.8), mic, meeting[1], 0.30), noise_rir, 256.0, 290.0, 35.0
    raise ValueError(room)
