"""Netstring codec (baresip ctrl_tcp framing): round trips, chunking, malformed input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from offhook.softphone.netstring import NetstringDecoder, encode


@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 50))
def test_roundtrip_in_any_chunks(messages: list[bytes], chunk: int) -> None:
    stream = b"".join(encode(m) for m in messages)
    decoder = NetstringDecoder()
    out = []
    for i in range(0, len(stream), chunk):
        out.extend(decoder.feed(stream[i : i + chunk]))
    assert out == messages
    assert decoder.error is None


def test_messages_before_garbage_are_kept_then_stream_is_closed() -> None:
    decoder = NetstringDecoder()
    assert decoder.feed(encode(b"ok") + b"zz:bad,") == [b"ok"]
    assert decoder.error is not None
    assert decoder.feed(encode(b"later")) == []  # nothing after garbage is trusted


def test_oversize_and_unterminated_are_errors() -> None:
    big = NetstringDecoder(max_size=10)
    assert big.feed(b"11:") == []
    assert big.error is not None and "exceeds" in str(big.error)
    open_ended = NetstringDecoder()
    open_ended.feed(b"2:abX")
    assert open_ended.error is not None and "terminated" in str(open_ended.error)
    no_colon = NetstringDecoder()
    no_colon.feed(b"12345678901")
    assert no_colon.error is not None
