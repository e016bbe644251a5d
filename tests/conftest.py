"""Shared fixtures: the real MicroPython VM (one Node process, a fresh VM per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from offhook.vm import MicroPythonVM

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read or write the real user's config, state, data or runtime dirs."""
    base = tmp_path_factory.mktemp("home")
    for name in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "XDG_CACHE_HOME"):
        path = base / name.lower()
        path.mkdir(mode=0o700)
        monkeypatch.setenv(name, str(path))


@pytest.fixture(scope="session")
def _vm_process() -> Iterator[MicroPythonVM]:
    vm = MicroPythonVM()
    yield vm
    vm.close()


@pytest.fixture
def mpvm(_vm_process: MicroPythonVM) -> MicroPythonVM:
    """A fresh MicroPython 1.27 VM with the RP2040's heap (~190 KB); files via put()."""
    _vm_process.reset()
    return _vm_process
