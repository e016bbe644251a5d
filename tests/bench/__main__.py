"""`make bench`: run every benchmark module and print one table of figures.

Each ``tests/bench/bench_*.py`` exposes ``run() -> list[Figure]``. A figure is
printed beside its reference (a comparable system or limit measured or stated in
the same run) and its goal; benchmarks never fail on timing, they report.
Run one area with ``python -m tests.bench protocol``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tests.bench.figures import Figure

OUT = Path(__file__).resolve().parents[2] / "out" / "bench.json"


def main(argv: list[str]) -> int:
    wanted = set(argv)
    console = Console() if sys.stdout.isatty() else Console(width=150)
    figures: list[Figure] = []
    failed = []
    for module_info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if not module_info.name.startswith("bench_"):
            continue
        area = module_info.name.removeprefix("bench_")
        if wanted and area not in wanted:
            continue
        console.print(f"[bold]bench[/bold] {area} …")
        started = time.perf_counter()
        try:
            module = importlib.import_module(f"tests.bench.{module_info.name}")
            figures.extend(module.run())
        except Exception:
            failed.append(area)
            console.print(f"[red]{area} failed[/red]\n{traceback.format_exc()}")
        console.print(f"  {area} took {time.perf_counter() - started:.1f} s")
    table = Table(title="offhook benchmarks")
    for column in ("area", "figure", "value", "reference", "goal", "met"):
        table.add_column(column, overflow="fold")
    for figure in figures:
        table.add_row(*figure.row())
    console.print(table)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps([figure.as_dict() for figure in figures], indent=1))
    console.print(f"figures written to {OUT}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
