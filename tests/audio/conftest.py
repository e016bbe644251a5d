"""Realistic test signals: espeak-ng speech, an image-method room, office noise (tests/bench/audio/scenes.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.bench.audio import scenes


@pytest.fixture(scope="session")
def far_speech() -> np.ndarray:
    return scenes.talker(scenes.FAR_TEXTS, "en-us+f3", 14.0, seed=3)


@pytest.fixture(scope="session")
def near_speech() -> np.ndarray:
    return scenes.talker(scenes.NEAR_TEXTS, "en-gb", 8.0, seed=4)


@pytest.fixture(scope="session")
def office_rirs() -> tuple[np.ndarray, np.ndarray]:
    room = (5.0, 4.0, 2.8)
    first = scenes.image_rir(room, (2.5, 2.3, 0.9), (2.3, 2.1, 1.1), 0.3, 0.12)
    moved = scenes.image_rir(room, (2.5, 2.3, 0.9), (2.7, 1.8, 1.2), 0.3, 0.12)
    return first, moved


def erle_db(mic: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(mic**2) / (np.sum(out**2) + 1e-20)))
