"""Where the desk-unit firmware sources are, and where each goes on a unit's flash.

What both ends share is written once, in this package, and every firmware build
(tests, simulator, mpy-cross check, signed bundles) installs it on the unit under
``/lib`` (``SHARED``): the link protocol (``linkproto.py``), signed bundles
(``bundle.py``), the link over HID reports (``hidframe.py``) and offhook's USB IDs
(``usbids.py``). firmware/ holds no copy of them (tests/test_one_source.py).

A few firmware files exist only for the MicroPython VM (the simulated board and
the simulated ``machine`` module): ``device_files()`` leaves them out of what goes
onto a real unit, ``device_files(sim=True)`` adds them (so mpy-cross checks them
too), and ``vm_files()`` lays out the VM's filesystem for tests and ``offhook sim``.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SHARED = {f"/lib/{name}.py": PACKAGE_DIR / f"{name}.py" for name in ("linkproto", "bundle", "hidframe", "usbids")}
LINKPROTO_DEVICE_PATH = "/lib/linkproto.py"
LINKPROTO_SOURCE = SHARED[LINKPROTO_DEVICE_PATH]
# Unit paths that exist only in the simulator, never on a real unit.
SIM_ONLY = ("/sim/", "/boards/sim.py")
# In the VM the simulated machine module stands where the built-in one is on a board.
VM_EXTRA = {
    "/lib/machine.py": "sim/machine.py",
    "/vm_main.py": "sim/vm_main.py",
    # Simulated machine.USBDevice; tests that want USB HID install it into machine first.
    "/lib/usbdevice.py": "sim/usbdevice.py",
}


def firmware_root() -> Path:
    """The firmware/ tree: packaged inside a wheel, or beside host/ in a checkout."""
    packaged = PACKAGE_DIR / "_firmware"
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parents[1] / "firmware"


def _is_sim_only(device_path: str) -> bool:
    return any(device_path == p or (p.endswith("/") and device_path.startswith(p)) for p in SIM_ONLY)


def device_files(root: Path | None = None, *, sim: bool = False) -> dict[str, Path]:
    """Map each unit path (``/main.py``, ``/lib/linkproto.py``, ...) to its source file.

    ``sim=True`` also includes the simulator-only files (under their source paths).
    """
    root = root or firmware_root()
    files = {
        "/" + path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    if not sim:
        files = {device_path: path for device_path, path in files.items() if not _is_sim_only(device_path)}
    files.update(SHARED)
    return files


def vm_files(root: Path | None = None) -> dict[str, Path]:
    """The MicroPython VM's filesystem for the simulated board: the unit's files, the
    sim board, ``/lib/machine.py`` (simulated) and ``/vm_main.py`` (the VM's entry)."""
    root = root or firmware_root()
    files = {p: src for p, src in device_files(root, sim=True).items() if not p.startswith("/sim/")}
    for device_path, relative in VM_EXTRA.items():
        files[device_path] = root / relative
    return files


def stage(dest: Path, root: Path | None = None) -> list[Path]:
    """Copy the device files into ``dest`` laid out as on the unit's flash; returns the paths."""
    staged = []
    for device_path, source in device_files(root).items():
        target = dest / device_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        staged.append(target)
    return staged
