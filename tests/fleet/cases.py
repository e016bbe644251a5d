# ruff: noqa: UP031  (runs on MicroPython: %-formatting)
"""Bundle cases that run unchanged on CPython and on the MicroPython VM.

``run_all(B, n_hex, named)`` takes the bundle module, the unit's public key (hex modulus)
and (name, bundle bytes) pairs; it returns one line per case. Both runtimes must give
the same lines. Bundles are fed in 200-byte pieces, as UPDATE_CHUNKs would bring them.
"""

import binascii


class Sink:
    def __init__(self):
        self.files = []
        self.size = 0

    def begin(self, path, size):
        self.files.append(path)

    def write(self, data):
        self.size += len(data)

    def end(self, path):
        pass


def outcome(B, n, data, board="pico", installed="1.0.0", loader=1):
    sink = Sink()
    reader = B.Reader(n, sink, board, installed, loader)
    try:
        for i in range(0, len(data), 200):
            reader.feed(data[i : i + 200])
        reader.finish()
    except B.BundleError as exc:
        return "REJECTED %s (files started: %d)" % (exc, len(sink.files))
    return "OK %s files=%d bytes=%d" % (reader.manifest["version"], len(sink.files), sink.size)


def unit_lines(B):
    lines = []
    for text in ("1.2.3", "0.0.0", "10.20.30", "1.2", "1.x.3", "", "1..2"):
        try:
            lines.append("version %r -> %r" % (text, B.parse_version(text)))
        except B.BundleError as exc:
            lines.append("version %r -> %s" % (text, exc))
    lines.append("sha " + B.sha256_hex(b"abc"))
    lines.append("canon " + binascii.hexlify(B.manifest_bytes({"b": [1, "x"], "a": None})).decode())
    for raw in (b"{}", b"[]", b"nope", b'{"format":1}'):
        try:
            B.parse_manifest(raw)
            lines.append("manifest ok")
        except B.BundleError as exc:
            lines.append("manifest %s" % exc)
    return lines


def run_all(B, n_hex, named):
    n = B.key_modulus(n_hex)
    lines = unit_lines(B)
    for name, data in named:
        lines.append("%s: %s" % (name, outcome(B, n, data)))
    return lines
