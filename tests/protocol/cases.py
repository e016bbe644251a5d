"""Protocol cases that run unchanged on CPython and on the MicroPython VM.

``run_all(L)`` takes the linkproto module and returns one line of text per case.
The tests run it on both runtimes and require identical output, so any behaviour
difference between the runtimes shows up as a diff. Keep to MicroPython 1.27.
"""

import binascii


def _hex(data):
    return binascii.hexlify(bytes(data)).decode()


def _describe(item, L):
    if isinstance(item, L.DecodeError):
        return "ERR code=%d seq=%d" % (item.code, item.seq)
    return "OK %s seq=%d flags=%d payload=%s" % (item.name, item.seq, item.flags, _hex(item.payload))


def message_vectors(L):
    """One (type, seq, payload) per message type, payloads built with the encoders."""
    return [
        (L.HELLO, 0, L.encode_json({"proto": 1, "fw": "0.1.0", "board": "pico", "serial": "E6614C311B7A8E2F"})),
        (L.ACK, 1, L.encode_ack(0)),
        (L.NACK, 2, L.encode_nack(7, L.ERR_UNKNOWN_TYPE, "type 0x7f")),
        (L.EVENT, 3, L.encode_event(L.BUTTON_HOOK, L.GESTURE_SHORT, 123456)),
        (L.EVENT, 4, L.encode_event(L.BUTTON_STATE, L.GESTURE_DOUBLE, 0xFFFFFFFF)),
        (L.STATE, 5, L.encode_state(L.CALL_ACTIVE, L.AGENT_ON_CALL, L.STATE_MUTED | L.STATE_HOLD_REMINDER, 42)),
        (L.HID_LEDS, 15, L.encode_hid_leds(L.HID_LED_OFF_HOOK | L.HID_LED_MUTE | L.HID_LED_HOLD)),
        (L.HID_LEDS, 16, L.encode_hid_leds(0xF4)),  # reserved bits 4-7 are not sent
        (L.CONFIG_GET, 6, L.encode_json({"keys": ["debounce_ms"]})),
        (L.CONFIG_SET, 7, L.encode_json({"debounce_ms": 25, "brightness": 80})),
        (L.CONFIG, 8, L.encode_json({"config": {"debounce_ms": 25}, "error": None})),
        (L.UPDATE_BEGIN, 9, L.encode_json({"size": 40960, "version": "0.2.0"})),
        (L.UPDATE_CHUNK, 10, L.encode_chunk(4096, bytes(range(256)) + bytes(200))),
        (L.UPDATE_COMMIT, 11, b""),
        (L.UPDATE_ABORT, 12, b""),
        (L.UPDATE_STATUS, 13, L.encode_json({"phase": "verify", "ok": True})),
        (L.LOG, 14, L.encode_log(L.LOG_WARNING, "config corrupt: defaults in use")),
        (L.PING, 65535, L.encode_ping(0xDEADBEEF)),
        (L.PONG, 0, L.encode_ping(0xDEADBEEF)),
    ]


def decode_payload(L, mtype, payload):
    if mtype == L.EVENT:
        return L.decode_event(payload)
    if mtype == L.STATE:
        return L.decode_state(payload)
    if mtype == L.HID_LEDS:
        return L.decode_hid_leds(payload)
    if mtype == L.ACK:
        return L.decode_ack(payload)
    if mtype == L.NACK:
        return L.decode_nack(payload)
    if mtype == L.LOG:
        return L.decode_log(payload)
    if mtype == L.UPDATE_CHUNK:
        offset, data = L.decode_chunk(payload)
        return (offset, _hex(data))
    if mtype in (L.PING, L.PONG):
        return L.decode_ping(payload)
    if payload:
        obj = L.decode_json(payload)
        return sorted(obj.items())
    return None


def roundtrip_lines(L):
    lines = []
    for mtype, seq, payload in message_vectors(L):
        wire = L.encode_frame(mtype, seq, payload, L.FLAG_ACK_REQUESTED)
        items = L.Decoder().feed(wire)
        assert len(items) == 1, items
        frame = items[0]
        assert isinstance(frame, L.Frame), frame
        assert frame.type == mtype and frame.seq == seq and bytes(frame.payload) == payload
        lines.append("%s %s %r" % (L.MESSAGE_NAMES[mtype], _hex(wire), decode_payload(L, mtype, frame.payload)))
    return lines


def bad_bytes_lines(L):
    """Each bad input gives a DecodeError (never an exception) and the next frame decodes."""
    good = L.encode_frame(L.STATE, 9, L.encode_state(1, 1, 0, 0), L.FLAG_ACK_REQUESTED)
    body = L.cobs_decode(good[:-1])
    bad_crc = bytearray(body)
    bad_crc[-1] ^= 0x01
    newer = bytearray(body[:-2])
    newer[0] = L.PROTOCOL_VERSION + 1
    newer += bytes(((L.crc16(newer) >> 8) & 0xFF, L.crc16(newer) & 0xFF))
    unknown = bytearray(body[:-2])
    unknown[1] = 0x7F
    unknown += bytes(((L.crc16(unknown) >> 8) & 0xFF, L.crc16(unknown) & 0xFF))
    cases = [
        ("wrong_crc", L.cobs_encode(bytes(bad_crc)) + b"\x00"),
        ("truncated", good[:4] + b"\x00"),
        ("garbage", b"\x01\x02\x03\xff\xfe" + b"\x00"),
        ("cobs_overrun", b"\x09\x01\x02" + b"\x00"),
        ("oversize", b"\x55" * (L.MAX_ENCODED + 10) + b"\x00"),
        ("newer_version", L.cobs_encode(bytes(newer)) + b"\x00"),
        ("unknown_type", L.cobs_encode(bytes(unknown)) + b"\x00"),
        ("empty_frames", b"\x00\x00\x00"),
    ]
    lines = []
    for name, junk in cases:
        decoder = L.Decoder()
        items = decoder.feed(junk + good)
        described = [_describe(item, L) for item in items]
        assert described[-1].startswith("OK STATE seq=9"), (name, described)
        lines.append("%s %s" % (name, " | ".join(described)))
    # The same stream fed one byte at a time decodes the same way.
    stream = b"".join(junk for _, junk in cases) + good
    decoder = L.Decoder()
    items = []
    for i in range(len(stream)):
        items.extend(decoder.feed(stream[i : i + 1]))
    lines.append("bytewise " + " | ".join(_describe(item, L) for item in items))
    return lines


def link_lines(L):
    """Reliable delivery between two Link ends with explicit time."""
    unit = L.Link(retry_ms=100, max_tries=3)
    host = L.Link(retry_ms=100, max_tries=3)
    lines = []
    seq = unit.send(L.EVENT, L.encode_event(L.BUTTON_MUTE, L.GESTURE_SHORT, 10), 0)
    wire = unit.take_output()
    got = host.receive(wire, 1)
    lines.append("delivered %s pending=%d" % ([_describe(i, L) for i in got], unit.pending))
    # The ACK was lost: the unit retransmits; the host drops the duplicate but ACKs again.
    host.take_output()
    unit.poll(150)
    again = unit.take_output()
    assert again == wire
    got = host.receive(again, 151)
    lines.append("duplicate delivered=%d dups=%d" % (len(got), host.stats["duplicates"]))
    unit.receive(host.take_output(), 152)
    lines.append("acked pending=%d seq=%d" % (unit.pending, seq))
    # Nobody answers: bounded retries, then reported as failed.
    unit.send(L.STATE, L.encode_state(0, 1), 200)
    for now in (300, 400, 500, 600):
        unit.poll(now)
    lines.append("failed %r retries=%d" % (unit.take_failed(), unit.stats["retries"]))
    # Unknown type from a newer peer: NACKed with its seq, the link keeps going.
    body = bytearray(L.cobs_decode(L.encode_frame(L.PING, 77, b"", 0)[:-1])[:-2])
    body[1] = 0x6E
    body += bytes(((L.crc16(body) >> 8) & 0xFF, L.crc16(body) & 0xFF))
    host.take_output()
    host.receive(L.cobs_encode(bytes(body)) + b"\x00", 700)
    reply = L.Decoder().feed(host.take_output())
    lines.append("nack %s %r" % (_describe(reply[0], L), L.decode_nack(reply[0].payload)))
    # HELLO starts a new session: a reused seq is delivered, not dropped.
    fresh = L.Link()
    fresh.send(L.HELLO, L.encode_json({"proto": 1}), 0)
    fresh.send(L.EVENT, L.encode_event(L.BUTTON_MUTE, L.GESTURE_SHORT, 10), 0)
    got = host.receive(fresh.take_output(), 800)
    lines.append("after hello %s" % [_describe(i, L) for i in got])
    return lines


def run_all(L):
    return roundtrip_lines(L) + bad_bytes_lines(L) + link_lines(L)
