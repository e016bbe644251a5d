"""Reading and writing mono 16-bit WAV files, with one-line errors for anything else."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from offhook.audio import pcm

Float = NDArray[np.float64]
RATES = (16000, 48000)


class WavError(ValueError):
    """A file that offhook cannot use, with the reason in one line."""


def read_wav(path: str | Path) -> tuple[Float, int]:
    """Samples as float64 in [-1, 1) and the sample rate. Mono, 16-bit, 16 or 48 kHz only."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as handle:
            channels = handle.getnchannels()
            width = handle.getsampwidth()
            rate = handle.getframerate()
            raw = handle.readframes(handle.getnframes())
    except FileNotFoundError:
        raise WavError(f"{path}: no such file") from None
    except (wave.Error, EOFError, OSError) as exc:
        raise WavError(f"{path}: not a readable WAV file ({exc})") from None
    if channels != 1:
        raise WavError(f"{path}: {channels} channels, expected mono")
    if width != 2:
        raise WavError(f"{path}: {8 * width}-bit samples, expected 16-bit PCM")
    if rate not in RATES:
        raise WavError(f"{path}: {rate} Hz, expected 16000 or 48000")
    return pcm.decode(raw), rate


def write_wav(path: str | Path, samples: Float, rate: int) -> None:
    """Write mono 16-bit PCM, clipping to the representable range."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.encode(samples))
