"""A simulated flash for the updater under CPython, with the simulator's journal semantics
(host/offhook/vm/unit.mjs): each closed file write, rename and removal is one journal entry;
after a power cut at entry N, later entries never reach flash while the running code goes
on seeing its own writes. ``reboot()`` gives the flash as it is after power comes back.
"""

from __future__ import annotations

import importlib.util
import io
import sys

from offhook import bundle, linkproto
from offhook.firmware import firmware_root

FIRMWARE_LIB = firmware_root() / "lib"


def load_unit_modules() -> tuple:
    """bootsel and updater exactly as on the unit (same files), importable under CPython."""
    sys.modules.setdefault("linkproto", linkproto)
    sys.modules.setdefault("bundle", bundle)
    mods = []
    for name in ("bootsel", "updater"):
        spec = importlib.util.spec_from_file_location(name, FIRMWARE_LIB / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        mods.append(module)
    return tuple(mods)


class _Writer(io.BytesIO):
    def __init__(self, flash: SimFlash, path: str) -> None:
        super().__init__()
        self._flash = flash
        self._path = path

    def close(self) -> None:
        if not self.closed:
            self._flash._commit(("write", self._path, self.getvalue()))
        super().close()


class SimFlash:
    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.persisted: dict[str, bytes] = dict(files or {})
        self.live: dict[str, bytes] = dict(self.persisted)
        self.entries = 0
        self.cut_at: int | None = None

    def cut_power_after(self, n: int) -> None:
        self.cut_at = self.entries + n

    def reboot(self) -> SimFlash:
        return SimFlash(self.persisted)

    def _commit(self, op: tuple) -> None:
        self._apply(self.live, op)
        self.entries += 1
        if self.cut_at is None or self.entries <= self.cut_at:
            self._apply(self.persisted, op)

    @staticmethod
    def _apply(files: dict[str, bytes], op: tuple) -> None:
        kind, path = op[0], op[1]
        if kind == "write":
            files[path] = op[2]
        elif kind == "rename":
            if path not in files:
                raise OSError(2, "no such file", path)
            files[op[2]] = files.pop(path)
        elif kind == "remove":
            files.pop(path, None)
        elif kind == "rmtree":
            for name in [p for p in files if p.startswith(path + "/")]:
                del files[name]

    # the bootsel.OsFs interface
    def read(self, path: str) -> bytes | None:
        return self.live.get(path)

    def write(self, path: str, data: bytes) -> None:
        self._commit(("write", path, bytes(data)))

    def open(self, path: str) -> _Writer:
        return _Writer(self, path)

    def rename(self, old: str, new: str) -> None:
        self._commit(("rename", old, new))

    def remove(self, path: str) -> None:
        if path in self.live:
            self._commit(("remove", path))

    def exists(self, path: str) -> bool:
        return path in self.live or any(p.startswith(path + "/") for p in self.live)

    def makedirs(self, path: str) -> None:
        pass

    def rmtree(self, path: str) -> None:
        # One removal per file, as the unit's os.remove loop does.
        for name in sorted(p for p in self.live if p.startswith(path + "/")):
            self._commit(("remove", name))
