"""Every benchmark module imports: `make bench` is not in `make test`, so a renamed name a bench
uses would otherwise be found only when someone next runs the benchmarks."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent / "bench"
ROOT = BENCH.parent.parent
MODULES = sorted(".".join(path.relative_to(ROOT).with_suffix("").parts) for path in BENCH.rglob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_bench_module_imports(module: str) -> None:
    importlib.import_module(module)
