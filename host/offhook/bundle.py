# ruff: noqa: UP031, B904  (runs on MicroPython: %-formatting, no exception chaining)
"""Signed firmware bundles: container, manifest and signature check (sans-IO).

One source for the host (``offhook.bundle``) and the desk unit (``/lib/bundle.py``):
no typing, no I/O, MicroPython 1.27 compatible. Tests run the same cases on both.

Container (all integers big-endian)::

    b"OHB1" | u32 manifest length | manifest (canonical JSON) | u16 signature length |
    signature | the files' bytes, one after another in manifest order

Manifest: ``{"format": 1, "version": "1.2.3", "board": "pico", "min_loader": 1,
"files": [[path, size, sha256 hex], ...], "key": hex modulus (optional, rotation)}``.
The signature is RSA PKCS#1 v1.5 with SHA-256 over the manifest bytes, checked with
one ``pow(s, 65537, n)``: a manifest carrying a new ``key`` is signed by the old one,
so key rotation needs no other mechanism.
"""

import binascii
import hashlib
import json
import struct

try:
    from linkproto import canonical_json
except ImportError:  # CPython: the host package
    from offhook.linkproto import canonical_json  # type: ignore[import-not-found,no-redef,unused-ignore]

MAGIC = b"OHB1"
FORMAT = 1
E = 65537
MAX_MANIFEST = 8192
MAX_SIGNATURE = 512
MAX_FILES = 96
MAX_FILE_SIZE = 131072
MAX_TOTAL = 1048576
MAX_PATH = 64
BOARDS = ("pico", "esp32s3", "sim")
# Never inside a slot: the boot loader's own files stay outside and are not updated here.
RESERVED = ("/boot.py", "/main.py", "/boot_state.json", "/keys.json")
# ASN.1 DigestInfo for SHA-256 (RFC 8017, section 9.2, note 1).
DIGEST_INFO = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


class BundleError(ValueError):
    """A bundle that must not be installed; str() is the one-line reason."""


def sha256_hex(data):
    return binascii.hexlify(hashlib.sha256(data).digest()).decode()


def parse_version(text):
    """ "1.2.3" -> (1, 2, 3); BundleError if not three dot-separated numbers."""
    parts = str(text).split(".")
    if len(parts) != 3:
        raise BundleError("version %r is not MAJOR.MINOR.PATCH" % (text,))
    out = []
    for part in parts:
        if not part or not part.isdigit() or len(part) > 6:
            raise BundleError("version %r is not MAJOR.MINOR.PATCH" % (text,))
        out.append(int(part))
    return tuple(out)


def _valid_path(path):
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH:
        return False
    if "//" in path or "/." in path or "\\" in path or path.endswith("/"):
        return False
    return path not in RESERVED


def manifest_bytes(manifest):
    return canonical_json(manifest).encode()


def parse_manifest(data):
    """Bytes -> validated manifest dict; BundleError with the reason otherwise."""
    if len(data) > MAX_MANIFEST:
        raise BundleError("manifest of %d bytes exceeds %d" % (len(data), MAX_MANIFEST))
    try:
        m = json.loads(bytes(data).decode())
    except (ValueError, UnicodeError):
        raise BundleError("manifest is not JSON")
    if not isinstance(m, dict):
        raise BundleError("manifest is not an object")
    if m.get("format") != FORMAT:
        raise BundleError("manifest format %r, expected %d" % (m.get("format"), FORMAT))
    parse_version(m.get("version"))
    if m.get("board") not in BOARDS:
        raise BundleError("unknown board %r" % (m.get("board"),))
    if not isinstance(m.get("min_loader"), int):
        raise BundleError("min_loader missing")
    files = m.get("files")
    if not isinstance(files, list) or not files or len(files) > MAX_FILES:
        raise BundleError("manifest must list 1..%d files" % MAX_FILES)
    total = 0
    seen = {}
    for entry in files:
        if not isinstance(entry, list) or len(entry) != 3:
            raise BundleError("malformed file entry")
        path, size, digest = entry
        if not _valid_path(path) or path in seen:
            raise BundleError("bad or duplicate file path %r" % (path,))
        if not isinstance(size, int) or size < 0 or size > MAX_FILE_SIZE:
            raise BundleError("bad size for %s" % path)
        if not isinstance(digest, str) or len(digest) != 64:
            raise BundleError("bad sha256 for %s" % path)
        seen[path] = 1
        total += size
    if total > MAX_TOTAL:
        raise BundleError("bundle files total %d bytes, limit %d" % (total, MAX_TOTAL))
    key = m.get("key")
    if key is not None and (not isinstance(key, str) or len(key) < 256 or len(key) > 1024):
        raise BundleError("bad rotation key")
    return m


def _pkcs1_em(message, k):
    """The PKCS#1 v1.5 encoded message (as an int) for SHA-256 over ``message``, k bytes."""
    t = DIGEST_INFO + hashlib.sha256(message).digest()
    if k < len(t) + 11:
        raise BundleError("key too short")
    return int.from_bytes(b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t, "big")


def key_modulus(key_hex):
    """Hex modulus (the key store's format) -> int; BundleError if implausible."""
    try:
        n = int(key_hex, 16)
    except (ValueError, TypeError):
        raise BundleError("public key is not hex")
    if n < 1 << 2047 or not n & 1:
        raise BundleError("public key is not an RSA modulus of at least 2048 bits")
    return n


def verify(message, signature, n):
    """True when ``signature`` is a PKCS#1 v1.5 SHA-256 signature of ``message`` by modulus n."""
    k = (len("%x" % n) + 1) // 2  # MicroPython ints have no bit_length()
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= n:
        return False
    return pow(s, E, n) == _pkcs1_em(message, k)


def check(manifest, board, installed, loader):
    """None, or why this manifest must not replace firmware ``installed`` on ``board``."""
    if manifest["board"] != board:
        return "bundle is for board %s, this unit is %s" % (manifest["board"], board)
    if parse_version(manifest["version"]) < parse_version(installed):
        return "downgrade refused: %s is older than installed %s" % (manifest["version"], installed)
    if manifest["min_loader"] > loader:
        return "needs boot loader %d, this unit has %d" % (manifest["min_loader"], loader)
    return None


class Reader:
    """Streams a bundle: ``feed(data)`` any pieces; files go to ``sink`` as they arrive.

    The manifest's signature, board, version and loader are checked before any file byte
    reaches the sink; each file's size and sha256 at its end. ``sink`` has ``begin(path,
    size)``, ``write(data)`` and ``end(path)``. Any problem raises BundleError; ``done``
    turns true after the last byte of the last file (more bytes are an error).
    """

    def __init__(self, n, sink, board, installed, loader):
        self.n = n
        self.sink = sink
        self.board = board
        self.installed = installed
        self.loader = loader
        self.manifest = None
        self.manifest_raw = b""
        self.signature = b""
        self.received = 0
        self.done = False
        self._buf = b""
        self._need = 8  # magic + manifest length
        self._stage = 0  # 0 header, 1 manifest, 2 sig length, 3 signature, 4 files
        self._index = 0
        self._left = 0
        self._hash = None

    def total_size(self):
        """Whole bundle size once the manifest is known, else 0."""
        if self.manifest is None:
            return 0
        size = 8 + len(self.manifest_raw) + 2 + len(self.signature)
        for entry in self.manifest["files"]:
            size += entry[1]
        return size

    def feed(self, data):
        self.received += len(data)
        if self.received > MAX_TOTAL + MAX_MANIFEST + MAX_SIGNATURE + 16:
            raise BundleError("bundle too large")
        while data:
            if self._stage == 4:
                data = self._file_bytes(data)
                continue
            if self.done:
                raise BundleError("bytes after the last file")
            take = self._need - len(self._buf)
            self._buf += data[:take]
            data = data[take:]
            if len(self._buf) == self._need:
                self._header_part(self._buf)
                self._buf = b""

    def _header_part(self, part):
        stage = self._stage
        if stage == 0:
            if part[:4] != MAGIC:
                raise BundleError("not an offhook bundle")
            size = struct.unpack(">I", part[4:8])[0]
            if size == 0 or size > MAX_MANIFEST:
                raise BundleError("manifest of %d bytes exceeds %d" % (size, MAX_MANIFEST))
            self._need = size
            self._stage = 1
        elif stage == 1:
            self.manifest_raw = part
            self._need = 2
            self._stage = 2
        elif stage == 2:
            size = struct.unpack(">H", part)[0]
            if size == 0:
                raise BundleError("missing signature")
            if size > MAX_SIGNATURE:
                raise BundleError("signature of %d bytes exceeds %d" % (size, MAX_SIGNATURE))
            self._need = size
            self._stage = 3
        else:
            self.signature = part
            if not verify(self.manifest_raw, part, self.n):
                raise BundleError("bad signature: not signed by this unit's key")
            manifest = parse_manifest(self.manifest_raw)
            reason = check(manifest, self.board, self.installed, self.loader)
            if reason:
                raise BundleError(reason)
            self.manifest = manifest
            self._stage = 4
            self._index = -1
            self._next_file()

    def _next_file(self):
        files = self.manifest["files"]  # type: ignore[index]
        self._index += 1
        while self._index < len(files):
            path, size = files[self._index][0], files[self._index][1]
            self.sink.begin(path, size)
            self._hash = hashlib.sha256()
            self._left = size
            if size:
                return
            self._end_file()
            self._index += 1
        self._stage = 5
        self.done = True

    def _file_bytes(self, data):
        piece = data[: self._left]
        self._left -= len(piece)
        self._hash.update(piece)  # type: ignore[union-attr]
        self.sink.write(piece)
        if self._left == 0:
            self._end_file()
            self._next_file()
        return data[len(piece) :]

    def _end_file(self):
        path, _size, digest = self.manifest["files"][self._index]  # type: ignore[index]
        got = binascii.hexlify(self._hash.digest()).decode()  # type: ignore[union-attr]
        if got != digest:
            raise BundleError("sha256 mismatch in %s" % path)
        self.sink.end(path)

    def finish(self):
        """Call at the end of the stream: BundleError if the bundle was cut short."""
        if not self.done:
            if self.manifest is None:
                raise BundleError("truncated bundle: manifest or signature incomplete")
            path = self.manifest["files"][min(self._index, len(self.manifest["files"]) - 1)][0]
            raise BundleError("truncated bundle: %s incomplete or missing" % path)
