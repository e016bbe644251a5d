"""`offhook sim`: run simulated desk units (the real firmware in the MicroPython VM)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import tempfile
from pathlib import Path

from offhook.cli import UsageError

SERIAL_BASE = "0ff0514d0000"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run a simulated desk unit (real firmware on the MicroPython VM, on a pty)",
        description=(
            "Run simulated desk units: the real firmware on the real MicroPython VM, each on a "
            "pseudo-terminal the host opens like a real unit's serial port. Keys press buttons; "
            "LEDs are drawn from the firmware's PWM outputs."
        ),
    )
    parser.add_argument("--headless", action="store_true", help="JSON lines on stdin/stdout instead of the TUI")
    parser.add_argument("--count", type=int, default=1, help="number of units (default 1)")
    parser.add_argument("--flash", type=Path, help="keep the units' flash here across runs (default: a temp dir)")
    parser.add_argument("--fresh", action="store_true", help="erase the flash first and install the firmware anew")
    parser.add_argument("--serial-base", default=SERIAL_BASE, help="first 12 hex digits of the serial numbers")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from offhook.sim.unit import SimulatedUnit

    if not 1 <= args.count <= 64:
        raise UsageError(f"--count must be 1..64, not {args.count}")
    base = args.serial_base.lower()
    if len(base) != 12 or any(c not in "0123456789abcdef" for c in base):
        raise UsageError("--serial-base must be 12 hex digits")
    with contextlib.ExitStack() as stack:
        flash_root = args.flash or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="offhook-sim-")))
        units = []
        for index in range(args.count):
            serial = f"{base}{index + 1:04x}"
            unit = SimulatedUnit(serial, flash_root / serial)
            unit.provision(fresh=args.fresh)
            units.append(unit)
        temporary = None if args.flash else flash_root
        return asyncio.run(_serve(units, args.headless, temporary))


async def _serve(units: list, headless: bool, temporary_flash: Path | None) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    # SIGHUP: the headless mode shuts down like on SIGTERM; the TUI handles it itself (tui.SimApp).
    for sig in (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if headless else ())):
        loop.add_signal_handler(sig, main.cancel)
    try:
        if headless:
            from offhook.sim import headless as headless_mode

            return await headless_mode.run(units)
        from offhook.sim import tui

        return await tui.run(
            units, on_hangup=None if temporary_flash is None else lambda: shutil.rmtree(temporary_flash, True)
        )
    except asyncio.CancelledError:
        return 0
    finally:
        for unit in units:
            await unit.stop()
