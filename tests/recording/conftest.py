"""Recording fixtures: a quality-team key pair and two generated talkers at 48 kHz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from tests.bench.audio import scenes

RATE = 48000
FRAME = 480  # 10 ms


@pytest.fixture(scope="session")
def talkers() -> tuple[np.ndarray, np.ndarray]:
    """(agent, customer): espeak-ng speech, 8 s each, at 48 kHz, float32 around -20 dBFS."""
    agent = scenes.talker(scenes.NEAR_TEXTS, "en-gb", 8.0, seed=4)
    customer = scenes.talker(scenes.FAR_TEXTS, "en-us+f3", 8.0, seed=3)
    out = []
    for x in (agent, customer):
        y = resample_poly(x, 3, 1)
        y = 0.1 * y / (np.sqrt(np.mean(y**2)) + 1e-12)
        out.append(np.clip(y, -1, 1).astype(np.float32))
    n = min(len(out[0]), len(out[1])) // FRAME * FRAME
    return out[0][:n], out[1][:n]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, Path]:
    """(recipient, identity file) of a fresh age key pair: the quality team's."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    path = tmp_path / "keys" / "quality.key"
    path.parent.mkdir()
    path.write_text(f"# quality team\n{identity}\n")
    path.chmod(0o600)
    return str(identity.to_public()), path
