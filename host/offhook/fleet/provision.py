"""First install onto a board running stock MicroPython, over its raw REPL (mpremote as a library).

Writes the factory image at the flash root (the application as .mpy, boards for this board only),
the boot loader (boot.py, main.py, loader.py, /lib/bootsel.py; outside the slots and never updated
over the link) and the key store /keys.json with IT's public key. A fresh /boot_state.json
(factory, with its version) replaces any old one and the slots are removed. Afterwards only
signed bundles change the unit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from offhook import bundle as B
from offhook.fleet import build

SOURCE_ONLY = ("/boot.py", "/main.py")  # MicroPython runs these two as source


class RawRepl(Protocol):
    def enter_raw_repl(self, soft_reset: bool = True) -> Any: ...
    def exit_raw_repl(self) -> Any: ...
    def fs_mkdir(self, path: str) -> Any: ...
    def fs_writefile(self, dest: str, data: bytes, chunk_size: int = 256) -> Any: ...
    def exec(self, command: str) -> Any: ...
    def close(self) -> Any: ...


def plan(board: str, public_key_hex: str) -> dict[str, bytes]:
    """Every file a provisioned unit gets, by unit path."""
    if board not in ("pico", "esp32s3"):
        raise B.BundleError(f"unknown board {board!r} (pico or esp32s3)")
    B.key_modulus(public_key_hex)  # a plausible RSA modulus, or BundleError
    sources = build.slot_sources(board)
    loader = {path: src for path, src in build.device_files().items() if path in build.LOADER_FILES}
    compiled = build.compile_files({p: s for p, s in {**sources, **loader}.items() if p not in SOURCE_ONLY})
    files = dict(compiled)
    for path in SOURCE_ONLY:
        files[path] = loader[path].read_bytes()
    files["/keys.json"] = json.dumps({"n": public_key_hex}).encode()
    # The factory image's version, so anti-rollback holds in safe mode too (the loader reads it here).
    state = {"active": "factory", "previous": None, "confirmed": True, "tries": 0, "version": firmware_version()}
    files["/boot_state.json"] = json.dumps(state).encode()
    return files


def firmware_version() -> str:
    text = (build.firmware_root() / "offhook_fw" / "__init__.py").read_text()
    match = re.search(r'(?m)^VERSION = "(.*)"$', text)
    if not match:
        raise B.BundleError("offhook_fw/__init__.py has no VERSION")
    return match.group(1)


_CLEAN = """
import os
def _rm(p):
    try:
        if os.stat(p)[0] & 0x4000:
            for e in os.listdir(p):
                _rm(p + '/' + e)
            os.rmdir(p)
        else:
            os.remove(p)
    except OSError:
        pass
for p in ('/boot_state.json.tmp', '/slot_a', '/slot_b'):
    _rm(p)
"""


def install(repl: RawRepl, files: dict[str, bytes], progress: Callable[[str], None] | None = None) -> None:
    repl.enter_raw_repl()
    try:
        repl.exec(_CLEAN)
        made: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                directory = "/" + "/".join(parts[:i])
                if directory not in made:
                    repl.exec(f"import os\ntry:\n    os.mkdir({directory!r})\nexcept OSError:\n    pass\n")
                    made.add(directory)
            repl.fs_writefile(path, files[path])
            if progress:
                progress(path)
    finally:
        repl.exit_raw_repl()


def open_repl(port: str) -> RawRepl:
    try:
        from mpremote.transport_serial import SerialTransport  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise RuntimeError("provisioning needs mpremote: pip install mpremote") from None
    repl: RawRepl = SerialTransport(port, baudrate=115200)
    return repl
