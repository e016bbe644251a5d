"""Test keys and bundles, generated at test time (never committed)."""

from __future__ import annotations

import functools
import struct

from cryptography.hazmat.primitives.asymmetric import rsa

from offhook import bundle as B
from offhook.fleet import build, keys

FILES = {
    "/offhook_fw/__init__.mpy": b"M\x06" + bytes(range(200)),
    "/offhook_fw/app.mpy": b"M\x06" + b"app" * 300,
    "/lib/linkproto.mpy": b"M\x06" + b"link" * 150,
    "/boards/pico.mpy": b"",
}


@functools.cache
def key(index: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def n_hex(index: int = 0) -> str:
    return keys.modulus_hex(key(index).public_key())


def signed(files: dict[str, bytes] = FILES, version: str = "1.1.0", board: str = "pico", signer: int = 0) -> bytes:
    return build.build_bundle(files, version, board, key(signer))


def flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def file_offsets(data: bytes) -> dict[str, int]:
    """Where each file's bytes start in a bundle."""
    (msize,) = struct.unpack(">I", data[4:8])
    manifest = B.parse_manifest(data[8 : 8 + msize])
    (ssize,) = struct.unpack(">H", data[8 + msize : 10 + msize])
    offset = 10 + msize + ssize
    out = {}
    for path, size, _digest in manifest["files"]:
        out[path] = offset
        offset += size
    return out


def bad_bundles() -> list[tuple[str, bytes]]:
    """Every rejection case of issue 8, plus the good bundle first."""
    good = signed()
    cases = [("good", good)]
    for path, offset in file_offsets(good).items():
        if FILES[path]:
            cases.append((f"flipped bit in {path}", flip(good, offset + len(FILES[path]) // 2)))
    cases.append(("wrong key", signed(signer=1)))
    manifest = build.make_manifest(FILES, "1.1.0", "pico")
    cases.append(("missing signature", build.pack(manifest, b"", FILES)))
    cases.append(("downgrade", signed(version="0.9.0")))
    cases.append(("wrong board", signed(board="esp32s3")))
    cases.append(("truncated", good[: len(good) - 100]))
    cases.append(("truncated in manifest", good[:50]))
    raw = B.manifest_bytes(manifest)
    cases.append(("flipped bit in manifest", flip(good, 8 + raw.index(b"1.1.0"))))
    listed = dict(FILES, **{"/offhook_fw/extra.mpy": b"M\x06extra"})
    missing = build.make_manifest(listed, "1.1.0", "pico")
    cases.append(("listed file missing", build.pack(missing, keys.sign(key(0), B.manifest_bytes(missing)), FILES)))
    cases.append(("not a bundle", b"PK\x03\x04" + bytes(100)))
    cases.append(("trailing bytes", good + b"x"))
    return cases
