"""Shared fixtures: the real MicroPython VM (one Node process, a fresh VM per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from offhook.vm import MicroPythonVM

REPO_ROOT = Path(__file__).resolve().parents[1]


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
