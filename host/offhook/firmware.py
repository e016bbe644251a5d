"""Where the desk-unit firmware sources are, and where each goes on a unit's flash.

The link protocol has one source, ``offhook/linkproto.py``; every firmware build
(tests, simulator, mpy-cross check, signed bundles) takes it from there and
installs it on the unit as ``/lib/linkproto.py``.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
LINKPROTO_SOURCE = PACKAGE_DIR / "linkproto.py"
LINKPROTO_DEVICE_PATH = "/lib/linkproto.py"


def firmware_root() -> Path:
    """The firmware/ tree: packaged inside a wheel, or beside host/ in a checkout."""
    packaged = PACKAGE_DIR / "_firmware"
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parents[1] / "firmware"


def device_files(root: Path | None = None) -> dict[str, Path]:
    """Map each unit path (``/main.py``, ``/lib/linkproto.py``, ...) to its source file."""
    root = root or firmware_root()
    files = {
        "/" + path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    files[LINKPROTO_DEVICE_PATH] = LINKPROTO_SOURCE
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
