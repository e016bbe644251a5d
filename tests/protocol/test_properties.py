"""Property-based tests of the link protocol on CPython (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offhook import linkproto as L

message_types = st.sampled_from(sorted(L.MESSAGE_NAMES))
payloads = st.binary(max_size=L.MAX_PAYLOAD)
seqs = st.integers(min_value=0, max_value=0xFFFF)


@given(st.binary(max_size=2000))
def test_cobs_roundtrip_and_no_zero(data: bytes) -> None:
    encoded = L.cobs_encode(data)
    assert 0 not in encoded
    assert L.cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + len(data) // 254 + 1


@given(message_types, seqs, payloads, st.sampled_from([0, L.FLAG_ACK_REQUESTED]))
def test_frame_roundtrip(mtype: int, seq: int, payload: bytes, flags: int) -> None:
    wire = L.encode_frame(mtype, seq, payload, flags)
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    assert len(wire) <= L.MAX_ENCODED + 1
    assert L.Decoder().feed(wire) == [L.Frame(mtype, seq, payload, flags)]


@given(st.lists(st.tuples(message_types, seqs, payloads), max_size=6), st.data())
def test_any_chunking_decodes_the_same(frames: list[tuple[int, int, bytes]], data: st.DataObject) -> None:
    stream = b"".join(L.encode_frame(t, s, p) for t, s, p in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = L.Decoder()
    decoded = []
    start = 0
    for cut in [*cuts, len(stream)]:
        decoded.extend(decoder.feed(stream[start:cut]))
        start = cut
    assert decoded == [L.Frame(t, s, p) for t, s, p in frames]


@given(st.binary(max_size=3000), message_types, seqs, payloads)
@settings(max_examples=300)
def test_garbage_never_raises_and_stream_recovers(garbage: bytes, mtype: int, seq: int, payload: bytes) -> None:
    decoder = L.Decoder()
    items = decoder.feed(garbage)
    assert all(isinstance(item, (L.Frame, L.DecodeError)) for item in items)
    # After a delimiter the next good frame always decodes.
    items = decoder.feed(b"\x00" + L.encode_frame(mtype, seq, payload))
    assert items[-1] == L.Frame(mtype, seq, payload)


@given(message_types, seqs, payloads, st.data())
def test_any_single_bit_flip_is_caught(mtype: int, seq: int, payload: bytes, data: st.DataObject) -> None:
    wire = bytearray(L.encode_frame(mtype, seq, payload))
    index = data.draw(st.integers(0, len(wire) - 2))  # not the delimiter
    wire[index] ^= 1 << data.draw(st.integers(0, 7))
    items = L.Decoder().feed(bytes(wire))
    assert L.Frame(mtype, seq, payload) not in items
    assert all(isinstance(item, L.DecodeError) for item in items)


def test_oversize_payload_refused_at_encode() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        L.encode_frame(L.LOG, 0, bytes(L.MAX_PAYLOAD + 1))


@pytest.mark.parametrize(
    ("decode", "payload"),
    [
        (L.decode_event, b"\x00"),
        (L.decode_event, L.encode_event(0, 9, 0)),  # unknown gesture
        (L.decode_event, bytes((99, 1, 0, 0, 0, 0))),  # unknown button
        (L.decode_state, L.encode_state(0, 0) + b"\x00"),
        (L.decode_state, bytes((9, 0, 0, 0, 0, 0))),  # unknown call state
        (L.decode_json, b"{not json"),
        (L.decode_json, b"[1, 2]"),
        (L.decode_json, b"\xff\xfe"),
        (L.decode_ack, b""),
        (L.decode_nack, b"\x00"),
        (L.decode_chunk, b"\x00\x01"),
        (L.decode_ping, b"\x00"),
        (L.decode_log, b""),
        (L.decode_hid_leds, b""),
        (L.decode_hid_leds, b"\x01\x00"),
    ],
)
def test_malformed_payloads_raise_value_error(decode, payload: bytes) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        decode(payload)


def test_elapsed_ms_handles_ticks_wrap() -> None:
    assert L.elapsed_ms(5, 0x3FFFFFFF - 4) == 10
    assert L.elapsed_ms(1_000, 400) == 600


def test_pending_limit_refuses_instead_of_growing() -> None:
    link = L.Link(max_pending=2)
    link.send(L.STATE, L.encode_state(0, 1))
    link.send(L.STATE, L.encode_state(0, 1))
    with pytest.raises(ValueError, match="unacknowledged"):
        link.send(L.STATE, L.encode_state(0, 1))
    # Unreliable frames are never held back.
    link.send(L.PING, L.encode_ping(1))


def test_application_refusal_reaches_the_sender() -> None:
    """ACK says "received"; a later NACK says why the receiver refused it."""
    unit, host = L.Link(), L.Link()
    frame_seq = unit.send(L.CONFIG_SET, L.encode_json({"debounce_ms": -1}))
    (frame,) = host.receive(unit.take_output())
    host.nack(frame, L.ERR_BAD_PAYLOAD, "debounce_ms must be 5..200")
    (refusal,) = unit.receive(host.take_output())
    assert unit.pending == 0
    assert refusal.type == L.NACK
    assert L.decode_nack(refusal.payload) == (frame_seq, L.ERR_BAD_PAYLOAD, "debounce_ms must be 5..200")


def test_protocol_nack_stops_retries() -> None:
    """A frame of a type the peer does not know is NACKed instead of ACKed: no retries."""
    unit, host = L.Link(retry_ms=10), L.Link()
    seq = unit.send(L.STATE, L.encode_state(0, 1))
    wire = bytearray(L.cobs_decode(unit.take_output()[:-1])[:-2])
    wire[1] = 0x6F  # as if the unit used a type this host does not know
    wire += L.crc16(bytes(wire)).to_bytes(2, "big")
    (error,) = host.receive(L.cobs_encode(bytes(wire)) + b"\x00")
    assert isinstance(error, L.DecodeError) and error.code == L.ERR_UNKNOWN_TYPE
    unit.receive(host.take_output())
    unit.poll(100)
    assert unit.take_output() == b""
    assert unit.take_failed() == [(seq, L.STATE)]


def test_next_retry_tells_when_poll_has_work() -> None:
    link = L.Link(retry_ms=250)
    assert link.next_retry_ms(0) is None  # nothing in flight: sleep until data arrives
    link.send(L.STATE, L.encode_state(0, 1), now_ms=1000)
    assert link.next_retry_ms(1100) == 150
    assert link.next_retry_ms(1400) == 0
    link.poll(1400)
    assert link.take_output().count(b"\x00") == 2  # the original and one retransmission
    assert link.next_retry_ms(1400) == 250


def test_hid_leds_ignore_reserved_bits() -> None:
    """Bits 4-7 of HID_LEDS are reserved: a newer unit may set them, this side ignores them."""
    assert L.decode_hid_leds(b"\xf4") == L.HID_LED_RING
    assert L.encode_hid_leds(0xFF) == b"\x0f"
    assert [L.decode_hid_leds(L.encode_hid_leds(bits)) for bits in range(16)] == list(range(16))
