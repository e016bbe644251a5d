"""Simulated units with a key store, and sim-board bundles built at test time (keys never on disk)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from pathlib import Path

from offhook.fleet import build
from offhook.sim.unit import SimulatedUnit
from tests.fleet import keyring

NEW = "0.2.0"


@functools.cache
def sim_files(version: str = NEW) -> dict[str, bytes]:
    """The sim board's application compiled with ``version`` stamped into offhook_fw.VERSION."""
    return build.compile_files(build.slot_sources("sim"), version)


@functools.cache
def sim_bundle(version: str = NEW, crash: bool = False) -> bytes:
    """The whole firmware for the sim board; ``crash``: its app raises at import (a bad release)."""
    files = dict(sim_files(version))
    if crash:
        files["/offhook_fw/app.mpy"] = _compiled(b"raise RuntimeError('release 0.3.0 crashes at boot')\n")
    return build.build_bundle(files, version, "sim", keyring.key(0))


def _compiled(source: bytes) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "app.py"
        path.write_bytes(source)
        return build.compile_files({"/offhook_fw/app.py": path})["/offhook_fw/app.mpy"]


@contextlib.asynccontextmanager
async def units(tmp: Path, count: int, held: tuple[int, ...] = ()) -> AsyncIterator[list[SimulatedUnit]]:
    made = []
    for i in range(count):
        unit = SimulatedUnit(f"{0xF1EE7000 + i:016x}", tmp / f"unit{i}", key_hex=keyring.n_hex(0))
        unit.held_at_boot = held
        made.append(unit)
    try:
        await asyncio.gather(*(unit.start() for unit in made))
        yield made
    finally:
        await asyncio.gather(*(unit.stop() for unit in made), return_exceptions=True)
