"""age v1 (https://age-encryption.org/v1) encryption to X25519 recipients, streamed chunk by chunk.

pyrage only encrypts a whole buffer or a whole reader at once; a recording must reach the disk
as the call goes, in the age format's own 64 KiB chunks, and must be finished cleanly when the
disk fills. So the writer side is this small module on `cryptography`'s primitives; reading is
pyrage's (the reference age library), and the tests decrypt this module's output with pyrage.
Sans-IO: ``AgeStream.push`` and ``finish`` return ciphertext for the caller to write.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import os
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

CHUNK = 64 * 1024  # age's plaintext chunk size
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class RecipientError(ValueError):
    """Not an age X25519 recipient (age1...)."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            if (top >> i) & 1:
                chk ^= gen
    return chk


def _bech32(text: str, want_hrp: str, what: str) -> bytes:
    """The 32 bytes a bech32 string of ``want_hrp`` carries; RecipientError naming ``what``."""
    hrp, sep, data = text.rpartition("1")
    if not sep or hrp != want_hrp or len(data) < 7 or any(c not in _BECH32 for c in data):
        raise RecipientError(f"{text[:16]!r}... is not {what}")
    values = [_BECH32.index(c) for c in data]
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    if _polymod(expanded + values) != 1:
        raise RecipientError(f"the checksum of {what} is wrong (a typo?)")
    acc, bits, out = 0, 0, bytearray()
    for value in values[:-6]:
        acc, bits = (acc << 5) | value, bits + 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    if len(out) != 32 or bits >= 5 or acc & ((1 << bits) - 1):
        raise RecipientError(f"{what} does not hold a 32-byte X25519 key")
    return bytes(out)


def parse_recipient(text: str) -> bytes:
    """The 32-byte X25519 public key of an ``age1...`` recipient; RecipientError if it is not one."""
    text = text.strip()
    if text.lower() != text:
        raise RecipientError(f"{text[:16]!r}... is not an age X25519 recipient (age1...)")
    return _bech32(text, "age", "an age X25519 recipient (age1...)")


def parse_identity(text: str) -> bytes:
    """The 32-byte X25519 secret of an ``AGE-SECRET-KEY-1...`` identity."""
    text = text.strip()
    if text.upper() != text:
        raise RecipientError("not an age identity (AGE-SECRET-KEY-1...)")
    return _bech32(text.lower(), "age-secret-key-", "an age identity (AGE-SECRET-KEY-1...)")


class SalvageError(ValueError):
    """Nothing in the file can be recovered with this identity (one line)."""


def _unb64(text: bytes) -> bytes:
    if b"=" in text or len(text) % 4 == 1:
        raise ValueError("bad base64")
    return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)


def salvage(data: bytes, identity: bytes) -> tuple[bytes, bool]:
    """Every chunk of an age file that authenticates, in order, and whether the stream was
    complete. For a recording a crash cut short (no final chunk): the standard readers refuse
    such a file as truncated, which it is; this recovers the part before the cut, and nothing
    that fails authentication. SalvageError if the header does not open or verify."""
    end = data.find(b"\n--- ")
    newline = data.find(b"\n", end + 5) if end >= 0 else -1
    if not data.startswith(b"age-encryption.org/v1\n") or newline < 0:
        raise SalvageError("not an age file")
    lines = data[: end + 1].split(b"\n")[1:-1]
    secret = X25519PrivateKey.from_private_bytes(identity)
    public = secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    file_key = None
    i = 0
    while i < len(lines):
        args = lines[i].split(b" ")
        body = b""
        i += 1
        while i < len(lines) and not lines[i].startswith(b"-> "):
            body += lines[i]
            i += 1
        if args[:2] != [b"->", b"X25519"] or len(args) != 3 or file_key is not None:
            continue
        try:
            share = _unb64(args[2])
            wrap = _hkdf(
                secret.exchange(X25519PublicKey.from_public_bytes(share)),
                share + public,
                b"age-encryption.org/v1/X25519",
            )
            file_key = ChaCha20Poly1305(wrap).decrypt(bytes(12), _unb64(body), None)
        except (InvalidTag, ValueError):  # not this identity's stanza, or a malformed one
            file_key = None
    if file_key is None:
        raise SalvageError("the identity does not match the key it was encrypted to")
    mac = hmac.new(_hkdf(file_key, b"", b"header"), data[: end + 4], sha256).digest()
    try:
        if not hmac.compare_digest(mac, _unb64(data[end + 5 : newline])):
            raise ValueError
    except ValueError:
        raise SalvageError("the header does not authenticate: corrupt or tampered") from None
    payload = data[newline + 1 :]
    aead = ChaCha20Poly1305(_hkdf(file_key, payload[:16], b"payload"))
    out = bytearray()
    pos, counter, size = 16, 0, CHUNK + 16
    while pos < len(payload):
        piece = payload[pos : pos + size]
        nonce = counter.to_bytes(11, "big")
        last = pos + size >= len(payload)
        try:
            if last:
                out += aead.decrypt(nonce + b"\x01", piece, None)
                return bytes(out), True
            out += aead.decrypt(nonce + b"\x00", piece, None)
        except InvalidTag:
            if not last:
                raise SalvageError(f"chunk {counter} does not authenticate: corrupt or tampered") from None
            with contextlib.suppress(InvalidTag):  # a whole chunk, then the cut; else a torn write: dropped
                out += aead.decrypt(nonce + b"\x00", piece, None)
            return bytes(out), False
        pos += size
        counter += 1
    return bytes(out), False


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=salt, info=info).derive(key)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def header(recipient: bytes, file_key: bytes) -> bytes:
    """The age header wrapping ``file_key`` to one X25519 recipient."""
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    if shared == bytes(32):
        raise RecipientError("the age recipient is a low-order point")
    wrap_key = _hkdf(shared, share + recipient, b"age-encryption.org/v1/X25519")
    body = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), file_key, None)
    text = f"age-encryption.org/v1\n-> X25519 {_b64(share)}\n{_b64(body)}\n---".encode()
    mac = hmac.new(_hkdf(file_key, b"", b"header"), text, sha256).digest()
    return text + b" " + _b64(mac).encode() + b"\n"


class AgeStream:
    """One age file, produced as the plaintext arrives: each full 64 KiB chunk is sealed at once."""

    def __init__(self, recipient: bytes) -> None:
        file_key = os.urandom(16)
        nonce = os.urandom(16)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._pending = bytearray()
        self._counter = 0
        self._start = header(recipient, file_key) + nonce
        self.finished = False

    def _seal(self, chunk: bytes, last: bool) -> bytes:
        nonce = self._counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        self._counter += 1
        return self._aead.encrypt(nonce, chunk, None)

    def push(self, data: bytes) -> bytes:
        """Ciphertext ready to write: the header first, then every chunk that filled up. A chunk
        is sealed only once more data follows it, since the last one must carry the final flag."""
        out = bytearray(self._start)
        self._start = b""
        self._pending += data
        while len(self._pending) > CHUNK:
            out += self._seal(bytes(self._pending[:CHUNK]), last=False)
            del self._pending[:CHUNK]
        return bytes(out)

    @property
    def buffered(self) -> int:
        """Plaintext bytes not yet on disk: what a crash now would lose."""
        return len(self._pending)

    def finish(self) -> bytes:
        """The rest: the final chunk (at most 64 KiB + 16)."""
        out = self._start + self._seal(bytes(self._pending), last=True)
        self._start = b""
        self._pending.clear()
        self.finished = True
        return out
