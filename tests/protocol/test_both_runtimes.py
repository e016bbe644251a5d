"""The link protocol behaves identically on CPython and on the real MicroPython VM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from offhook import linkproto
from offhook.firmware import LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE
from offhook.vm import MicroPythonVM
from tests.protocol import cases

CASES_SOURCE = Path(cases.__file__).read_bytes()


def _load(vm: MicroPythonVM) -> None:
    vm.put(LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE.read_bytes())
    vm.put("/cases.py", CASES_SOURCE)


def test_all_cases_identical_on_both_runtimes(mpvm: MicroPythonVM) -> None:
    expected = cases.run_all(linkproto)
    _load(mpvm)
    result = mpvm.run("import json, linkproto, cases\nprint(json.dumps(cases.run_all(linkproto)))")
    on_vm = json.loads(result.check())
    assert on_vm == expected
    assert not result.heap_grew, "the protocol outgrew the RP2040 heap"


@pytest.mark.parametrize("vector", cases.message_vectors(linkproto), ids=lambda v: linkproto.MESSAGE_NAMES[v[0]])
def test_cpython_frames_decode_on_vm(mpvm: MicroPythonVM, vector: tuple[int, int, bytes]) -> None:
    mtype, seq, payload = vector
    wire = linkproto.encode_frame(mtype, seq, payload, linkproto.FLAG_ACK_REQUESTED)
    _load(mpvm)
    code = (
        "import linkproto as L, binascii\n"
        f"items = L.Decoder().feed(binascii.unhexlify('{wire.hex()}'))\n"
        "f = items[0]\n"
        "print(len(items), f.type, f.seq, f.flags, 'payload=' + binascii.hexlify(f.payload).decode())"
    )
    assert mpvm.run(code).check().split() == ["1", str(mtype), str(seq), "1", "payload=" + payload.hex()]


def test_vm_frames_decode_on_cpython(mpvm: MicroPythonVM) -> None:
    _load(mpvm)
    code = (
        "import linkproto as L, cases, binascii\n"
        "for t, s, p in cases.message_vectors(L):\n"
        "    print(binascii.hexlify(L.encode_frame(t, s, p, 1)).decode())"
    )
    lines = mpvm.run(code).check().split()
    vectors = cases.message_vectors(linkproto)
    assert len(lines) == len(vectors)
    for line, (mtype, seq, payload) in zip(lines, vectors, strict=True):
        (frame,) = linkproto.Decoder().feed(bytes.fromhex(line))
        assert isinstance(frame, linkproto.Frame)
        assert (frame.type, frame.seq, bytes(frame.payload)) == (mtype, seq, payload)


def test_vm_decoder_survives_random_bytes(mpvm: MicroPythonVM) -> None:
    """Random and mutated frames on the VM: errors are returned, never raised; the stream recovers."""
    _load(mpvm)
    code = """
import linkproto as L, random
random.seed(1234)
good = L.encode_frame(L.EVENT, 3, L.encode_event(1, 1, 5), 1)
decoder = L.Decoder()
recovered = 0
for i in range(300):
    junk = bytearray(random.getrandbits(8) for _ in range(random.getrandbits(6)))
    mutated = bytearray(good)
    mutated[random.getrandbits(4) % len(mutated)] ^= 1 << random.getrandbits(3)
    items = decoder.feed(bytes(junk) + b"\\x00" + bytes(mutated) + b"\\x00" + good)
    if items and isinstance(items[-1], L.Frame) and items[-1].seq == 3:
        recovered += 1
print(recovered)
"""
    assert mpvm.run(code).check().strip() == "300"
