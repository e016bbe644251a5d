"""Coverage-guided fuzzing of the link decoder and the reliable link with atheris (make soak).

Any exception escaping the decoder or Link.receive is a crash. Run:
    .venv/bin/python tests/reliability/atheris_link.py -runs=1000000
"""

import sys

import atheris

with atheris.instrument_imports():
    from offhook import linkproto as L


def test_one_input(data: bytes) -> None:
    decoder = L.Decoder()
    for item in decoder.feed(data):
        assert isinstance(item, (L.Frame, L.DecodeError))
    link = L.Link()
    link.receive(data, 0)
    link.poll(10_000)
    # The stream always recovers at the next delimiter.
    good = L.encode_frame(L.STATE, 5, L.encode_state(1, 1), 1)
    items = decoder.feed(b"\x00" + good)
    assert items and items[-1] == L.Frame(L.STATE, 5, L.encode_state(1, 1), 1)


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
