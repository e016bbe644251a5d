"""Fixtures for the metrics tests: a private data dir and a recorder on a fresh store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from offhook.metrics.store import CallRecorder


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("OFFHOOK_DATA_DIR", str(path))
    return path


@pytest.fixture
def recorder(data_dir: Path) -> Iterator[CallRecorder]:
    with CallRecorder() as rec:
        yield rec
