"""offhook link protocol: framing, messages and reliable delivery (sans-IO).

This one file runs unchanged on CPython (host) and MicroPython 1.27 (desk unit):
no typing imports, no dataclasses, no asyncio, no I/O and no clock. Callers pass
bytes in, take bytes out, and pass the current time in milliseconds. On the unit
it is installed as the top-level module ``linkproto``; on the host it is
``offhook.linkproto``. The byte layout is documented in firmware/PROTOCOL.md.
"""

import json
import struct
from array import array

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):  # type: ignore[no-redef,misc]
        return value


PROTOCOL_VERSION = const(1)
HEADER_SIZE = const(5)  # version, type, flags, seq (u16 big-endian)
CRC_SIZE = const(2)
MAX_PAYLOAD = const(480)
MAX_BODY = const(487)  # HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE
MAX_ENCODED = const(490)  # COBS adds at most one byte per 254, plus one
SEQ_MODULO = const(0x10000)

FLAG_ACK_REQUESTED = const(0x01)

# Message types (see PROTOCOL.md for each payload).
HELLO = const(0x01)
ACK = const(0x02)
NACK = const(0x03)
EVENT = const(0x10)
STATE = const(0x11)
HID_LEDS = const(0x12)
CONFIG_GET = const(0x20)
CONFIG_SET = const(0x21)
CONFIG = const(0x22)
UPDATE_BEGIN = const(0x30)
UPDATE_CHUNK = const(0x31)
UPDATE_COMMIT = const(0x32)
UPDATE_ABORT = const(0x33)
UPDATE_STATUS = const(0x34)
LOG = const(0x40)
PING = const(0x50)
PONG = const(0x51)

MESSAGE_NAMES = {
    HELLO: "HELLO",
    ACK: "ACK",
    NACK: "NACK",
    EVENT: "EVENT",
    STATE: "STATE",
    HID_LEDS: "HID_LEDS",
    CONFIG_GET: "CONFIG_GET",
    CONFIG_SET: "CONFIG_SET",
    CONFIG: "CONFIG",
    UPDATE_BEGIN: "UPDATE_BEGIN",
    UPDATE_CHUNK: "UPDATE_CHUNK",
    UPDATE_COMMIT: "UPDATE_COMMIT",
    UPDATE_ABORT: "UPDATE_ABORT",
    UPDATE_STATUS: "UPDATE_STATUS",
    LOG: "LOG",
    PING: "PING",
    PONG: "PONG",
}

# State-changing messages travel reliably: ACK by sequence number, retries, dedup.
RELIABLE_TYPES = (
    HELLO,
    EVENT,
    STATE,
    HID_LEDS,
    CONFIG_GET,
    CONFIG_SET,
    CONFIG,
    UPDATE_BEGIN,
    UPDATE_CHUNK,
    UPDATE_COMMIT,
    UPDATE_ABORT,
    UPDATE_STATUS,
)

# Decode / NACK error codes.
ERR_COBS = const(1)
ERR_SHORT = const(2)
ERR_CRC = const(3)
ERR_OVERSIZE = const(4)
ERR_VERSION = const(5)
ERR_UNKNOWN_TYPE = const(6)
ERR_BAD_PAYLOAD = const(7)
ERR_REFUSED = const(8)

ERROR_NAMES = {
    ERR_COBS: "bad COBS encoding",
    ERR_SHORT: "frame too short",
    ERR_CRC: "CRC mismatch",
    ERR_OVERSIZE: "frame too large",
    ERR_VERSION: "unsupported protocol version",
    ERR_UNKNOWN_TYPE: "unknown message type",
    ERR_BAD_PAYLOAD: "malformed payload",
    ERR_REFUSED: "request refused",
}

# Buttons (EVENT.button).
BUTTON_HOOK = const(0)
BUTTON_MUTE = const(1)
BUTTON_HOLD = const(2)
BUTTON_ESCALATE = const(3)
BUTTON_STATE = const(4)
BUTTON_VOL_UP = const(5)
BUTTON_VOL_DOWN = const(6)
BUTTON_NAMES = ("hook", "mute", "hold", "escalate", "state", "vol_up", "vol_down")

# Gestures (EVENT.gesture).
GESTURE_SHORT = const(1)
GESTURE_LONG = const(2)
GESTURE_DOUBLE = const(3)
GESTURE_NAMES = {GESTURE_SHORT: "short", GESTURE_LONG: "long", GESTURE_DOUBLE: "double"}

# Call state (STATE.call).
CALL_IDLE = const(0)
CALL_RINGING = const(1)
CALL_DIALING = const(2)
CALL_ACTIVE = const(3)
CALL_HELD = const(4)
CALL_NAMES = ("idle", "ringing", "dialing", "active", "held")

# Agent state (STATE.agent).
AGENT_OFFLINE = const(0)
AGENT_AVAILABLE = const(1)
AGENT_ON_CALL = const(2)
AGENT_WRAP_UP = const(3)
AGENT_BREAK = const(4)
AGENT_NAMES = ("offline", "available", "on_call", "wrap_up", "break")

# STATE.flags bits.
STATE_MUTED = const(0x0001)
STATE_MUTE_UNCONFIRMED = const(0x0002)
STATE_HOLD_REMINDER = const(0x0004)
STATE_CALL_WAITING = const(0x0008)
STATE_CONSULT = const(0x0010)
STATE_IDENTIFY = const(0x0020)
STATE_PAIRING = const(0x0040)
STATE_UPDATING = const(0x0080)
STATE_HID_SOFTPHONE = const(0x0100)  # a HID softphone is configured: keep sending Telephony reports
# The recording bits are private names on purpose: a public const() is a global and a qstr on the
# unit, and these three pushed the RP2040's heap after boot with USB HID past its 48 KB budget
# (+4.5 KB: a new qstr pool). The host reads them as L._STATE_RECORDING*; the firmware keeps copies.
_STATE_RECORDING = const(0x0200)  # the current call is being recorded (docs/recording.md)
_STATE_RECORDING_PAUSED = const(0x0400)  # its recording is paused (e.g. a card number is read out)
_STATE_RECORDING_FAILED = const(0x0800)  # its recording stopped on an error (full disk): an alert
STATE_FLAG_NAMES = (
    (STATE_MUTED, "muted"),
    (STATE_MUTE_UNCONFIRMED, "mute_unconfirmed"),
    (STATE_HOLD_REMINDER, "hold_reminder"),
    (STATE_CALL_WAITING, "call_waiting"),
    (STATE_CONSULT, "consult"),
    (STATE_IDENTIFY, "identify"),
    (STATE_PAIRING, "pairing"),
    (STATE_UPDATING, "updating"),
    (STATE_HID_SOFTPHONE, "hid_softphone"),
    (_STATE_RECORDING, "recording"),
    (_STATE_RECORDING_PAUSED, "recording_paused"),
    (_STATE_RECORDING_FAILED, "recording_failed"),
)

# HID_LEDS bits: the Telephony LED output report a HID softphone set (hw/hid.md), same order.
HID_LED_OFF_HOOK = const(0x01)
HID_LED_MUTE = const(0x02)
HID_LED_RING = const(0x04)
HID_LED_HOLD = const(0x08)

# LOG levels.
LOG_DEBUG = const(10)
LOG_INFO = const(20)
LOG_WARNING = const(30)
LOG_ERROR = const(40)

_EVENT_FORMAT = ">BBI"  # button, gesture, unit time (ms, wraps)
_STATE_FORMAT = ">BBHH"  # call, agent, flags, timer (s)
_NACK_HEAD = ">HB"  # offending seq, error code; then UTF-8 reason
_CHUNK_HEAD = ">I"  # offset; then data
NO_SEQ = const(0xFFFF)


# ---------------------------------------------------------------- CRC-16


def _make_crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return array("H", table)  # 512 bytes; a tuple costs the unit's heap 1 KB


_CRC_TABLE = _make_crc_table()


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection)."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ byte]
    return crc


# ---------------------------------------------------------------- COBS


def cobs_encode(data):
    """Consistent Overhead Byte Stuffing: the result contains no zero byte."""
    out = bytearray()
    code_index = 0
    out.append(0)
    code = 1
    for byte in data:
        if byte == 0:
            out[code_index] = code
            code_index = len(out)
            out.append(0)
            code = 1
        else:
            out.append(byte)
            code += 1
            if code == 0xFF:
                out[code_index] = code
                code_index = len(out)
                out.append(0)
                code = 1
    out[code_index] = code
    return bytes(out)


def cobs_decode(data):
    """Inverse of cobs_encode; raises ValueError on malformed input."""
    out = bytearray()
    index = 0
    length = len(data)
    while index < length:
        code = data[index]
        if code == 0:
            raise ValueError("zero byte inside COBS frame")
        end = index + code
        if end > length:
            raise ValueError("COBS block runs past the frame")
        chunk = data[index + 1 : end]
        if 0 in chunk:
            raise ValueError("zero byte inside COBS frame")
        out.extend(chunk)
        index = end
        if code != 0xFF and index < length:
            out.append(0)
    return bytes(out)


# ---------------------------------------------------------------- frames


class Frame:
    """One decoded frame: header fields and raw payload bytes."""

    def __init__(self, mtype, seq, payload=b"", flags=0, version=PROTOCOL_VERSION):
        self.version = version
        self.type = mtype
        self.flags = flags
        self.seq = seq
        self.payload = payload

    @property
    def name(self):
        return MESSAGE_NAMES.get(self.type, "0x%02x" % self.type)

    @property
    def ack_requested(self):
        return bool(self.flags & FLAG_ACK_REQUESTED)

    def __eq__(self, other):
        return (
            isinstance(other, Frame)
            and self.version == other.version
            and self.type == other.type
            and self.flags == other.flags
            and self.seq == other.seq
            and bytes(self.payload) == bytes(other.payload)
        )

    def __repr__(self):
        return "Frame(%s seq=%d flags=%d payload=%r)" % (
            self.name,
            self.seq,
            self.flags,
            bytes(self.payload),
        )


class DecodeError:
    """A frame that could not be accepted; returned by the decoder, never raised.

    ``seq`` is the offending frame's sequence number when its header could be
    trusted (CRC good), else NO_SEQ. ``code`` is one of the ERR_* constants.
    """

    def __init__(self, code, reason, seq=NO_SEQ, mtype=None):
        self.code = code
        self.reason = reason
        self.seq = seq
        self.type = mtype

    def __repr__(self):
        return "DecodeError(%s: %s)" % (ERROR_NAMES.get(self.code, self.code), self.reason)


def encode_frame(mtype, seq, payload=b"", flags=0, version=PROTOCOL_VERSION):
    """Header + payload + CRC, COBS-encoded, with the trailing 0x00 delimiter."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload of %d bytes exceeds %d" % (len(payload), MAX_PAYLOAD))
    body = bytearray(struct.pack(">BBBH", version, mtype, flags, seq % SEQ_MODULO))
    body.extend(payload)
    body.extend(struct.pack(">H", crc16(body)))
    return cobs_encode(body) + b"\x00"


def parse_body(encoded):
    """Decode one COBS-encoded frame (without its delimiter) to Frame or DecodeError."""
    if len(encoded) > MAX_ENCODED:
        return DecodeError(ERR_OVERSIZE, "%d encoded bytes, limit %d" % (len(encoded), MAX_ENCODED))
    try:
        body = cobs_decode(encoded)
    except ValueError as exc:
        return DecodeError(ERR_COBS, str(exc))
    if len(body) < HEADER_SIZE + CRC_SIZE:
        return DecodeError(ERR_SHORT, "%d bytes, need at least %d" % (len(body), HEADER_SIZE + CRC_SIZE))
    if len(body) > MAX_BODY:
        return DecodeError(ERR_OVERSIZE, "%d bytes, limit %d" % (len(body), MAX_BODY))
    (expected,) = struct.unpack(">H", body[-CRC_SIZE:])
    if crc16(body[:-CRC_SIZE]) != expected:
        return DecodeError(ERR_CRC, "CRC mismatch")
    version, mtype, flags, seq = struct.unpack(">BBBH", body[:HEADER_SIZE])
    if version != PROTOCOL_VERSION:
        return DecodeError(ERR_VERSION, "version %d, this side speaks %d" % (version, PROTOCOL_VERSION), seq, mtype)
    if mtype not in MESSAGE_NAMES:
        return DecodeError(ERR_UNKNOWN_TYPE, "type 0x%02x" % mtype, seq, mtype)
    return Frame(mtype, seq, body[HEADER_SIZE:-CRC_SIZE], flags, version)


class Decoder:
    """Streaming decoder: feed any byte chunks, get Frames and DecodeErrors.

    Never raises on input. Garbage is dropped up to the next 0x00 delimiter, so
    the stream recovers at the next frame. Memory stays bounded by MAX_ENCODED.
    """

    def __init__(self):
        self._buffer = bytearray()
        self._overflowed = False

    def reset(self):
        self._buffer = bytearray()
        self._overflowed = False

    def feed(self, data):
        results = []
        start = 0
        length = len(data)
        while start < length:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:])
                break
            self._append(data[start:end])
            if self._overflowed:
                results.append(DecodeError(ERR_OVERSIZE, "frame exceeded %d bytes" % MAX_ENCODED))
            elif self._buffer:
                results.append(parse_body(bytes(self._buffer)))
            self._buffer = bytearray()
            self._overflowed = False
            start = end + 1
        return results

    def _append(self, chunk):
        if self._overflowed:
            return
        if len(self._buffer) + len(chunk) > MAX_ENCODED:
            self._overflowed = True
            self._buffer = bytearray()
        else:
            self._buffer.extend(chunk)


# ---------------------------------------------------------------- payloads


def encode_event(button, gesture, unit_ms):
    return struct.pack(_EVENT_FORMAT, button, gesture, unit_ms & 0xFFFFFFFF)


def decode_event(payload):
    """-> (button, gesture, unit_ms); ValueError if malformed."""
    if len(payload) != struct.calcsize(_EVENT_FORMAT):
        raise ValueError("EVENT payload must be %d bytes" % struct.calcsize(_EVENT_FORMAT))
    button, gesture, unit_ms = struct.unpack(_EVENT_FORMAT, payload)
    if button >= len(BUTTON_NAMES) or gesture not in GESTURE_NAMES:
        raise ValueError("EVENT button %d / gesture %d unknown" % (button, gesture))
    return button, gesture, unit_ms


def encode_state(call, agent, flags=0, timer_s=0):
    return struct.pack(_STATE_FORMAT, call, agent, flags, min(max(int(timer_s), 0), 0xFFFF))


def decode_state(payload):
    """-> (call, agent, flags, timer_s); ValueError if malformed."""
    if len(payload) != struct.calcsize(_STATE_FORMAT):
        raise ValueError("STATE payload must be %d bytes" % struct.calcsize(_STATE_FORMAT))
    call, agent, flags, timer_s = struct.unpack(_STATE_FORMAT, payload)
    if call >= len(CALL_NAMES) or agent >= len(AGENT_NAMES):
        raise ValueError("STATE call %d / agent %d unknown" % (call, agent))
    return call, agent, flags, timer_s


def encode_hid_leds(bits):
    return bytes((bits & 0x0F,))


def decode_hid_leds(payload):
    """-> HID_LED_* bits; reserved bits 4-7 are ignored. ValueError if malformed."""
    if len(payload) != 1:
        raise ValueError("HID_LEDS payload must be 1 byte")
    return payload[0] & 0x0F


def encode_ack(seq):
    return struct.pack(">H", seq)


def decode_ack(payload):
    if len(payload) != 2:
        raise ValueError("ACK payload must be 2 bytes")
    return struct.unpack(">H", payload)[0]


def encode_nack(seq, code, reason=""):
    return (struct.pack(_NACK_HEAD, seq, code) + reason.encode())[:MAX_PAYLOAD]


def decode_nack(payload):
    """-> (seq, code, reason)."""
    if len(payload) < 3:
        raise ValueError("NACK payload must be at least 3 bytes")
    seq, code = struct.unpack(_NACK_HEAD, payload[:3])
    return seq, code, bytes(payload[3:]).decode("utf-8", "replace")


def canonical_json(obj):
    """JSON with sorted keys and no spaces: the same bytes on CPython and MicroPython
    (whose dict order differs), so frames and signed manifests are reproducible."""
    if isinstance(obj, dict):
        return "{" + ",".join(json.dumps(str(key)) + ":" + canonical_json(obj[key]) for key in sorted(obj)) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(canonical_json(item) for item in obj) + "]"
    return json.dumps(obj)


def encode_json(obj):
    data = canonical_json(obj).encode()
    if len(data) > MAX_PAYLOAD:
        raise ValueError("JSON payload of %d bytes exceeds %d" % (len(data), MAX_PAYLOAD))
    return data


def decode_json(payload):
    """JSON object payload (HELLO, CONFIG*, UPDATE_BEGIN/STATUS); ValueError if malformed."""
    try:
        obj = json.loads(bytes(payload).decode())
    except (ValueError, UnicodeError) as exc:  # MicroPython raises ValueError for bad JSON
        raise ValueError("payload is not JSON: %s" % exc)
    if not isinstance(obj, dict):
        raise ValueError("JSON payload must be an object")
    return obj


def encode_log(level, text):
    data = text.encode()[: MAX_PAYLOAD - 1]
    return bytes((level,)) + data


def decode_log(payload):
    """-> (level, text)."""
    if len(payload) < 1:
        raise ValueError("LOG payload is empty")
    return payload[0], bytes(payload[1:]).decode("utf-8", "replace")


def encode_chunk(offset, data):
    return struct.pack(_CHUNK_HEAD, offset) + data


def decode_chunk(payload):
    """-> (offset, data)."""
    if len(payload) < 4:
        raise ValueError("UPDATE_CHUNK payload must be at least 4 bytes")
    return struct.unpack(_CHUNK_HEAD, payload[:4])[0], bytes(payload[4:])


def encode_ping(token):
    return struct.pack(">I", token & 0xFFFFFFFF)


def decode_ping(payload):
    if len(payload) != 4:
        raise ValueError("PING/PONG payload must be 4 bytes")
    return struct.unpack(">I", payload)[0]


# ---------------------------------------------------------------- reliable link


def elapsed_ms(now_ms, then_ms):
    """Milliseconds from then to now; tolerates MicroPython's ticks_ms wrap (2**30)."""
    return (now_ms - then_ms) & 0x3FFFFFFF


class _Pending:
    def __init__(self, seq, mtype, wire, now_ms):
        self.seq = seq
        self.type = mtype
        self.wire = wire
        self.sent_ms = now_ms
        self.tries = 1


class Link:
    """One end of the link: sequence numbers, ACKs, retries, duplicate suppression.

    ``send`` queues a frame; ``receive`` takes raw bytes and returns the frames
    to act on (duplicates dropped, ACKs consumed) and DecodeErrors; ``poll``
    retransmits what is due; ``take_output`` returns the bytes to write. A
    reliable frame unacknowledged after ``max_tries`` sends lands in
    ``take_failed``. Receiving a HELLO starts a new session: the duplicate window
    is cleared, because the peer has restarted its sequence numbers.
    """

    def __init__(self, retry_ms=250, max_tries=5, dedup_window=32, max_pending=16):
        self.retry_ms = retry_ms
        self.max_tries = max_tries
        self.max_pending = max_pending
        self._dedup_window = dedup_window
        self._decoder = Decoder()
        self._next_seq = 0
        self._pending = []
        self._failed = []
        self._output = bytearray()
        self._seen = []
        self.stats = {"rx_frames": 0, "rx_errors": 0, "duplicates": 0, "retries": 0, "gave_up": 0}

    def reset(self):
        """Forget everything in flight (after a reconnect)."""
        self._decoder.reset()
        self._pending = []
        self._failed = []
        self._output = bytearray()
        self._seen = []

    @property
    def pending(self):
        return len(self._pending)

    def in_flight(self, seq):
        """Whether the reliable frame ``seq`` still waits for its ACK (not yet ACKed, NACKed or failed)."""
        for entry in self._pending:  # noqa: SIM110  (a loop: any() would allocate on the unit's heap every step)
            if entry.seq == seq:
                return True
        return False

    def send(self, mtype, payload=b"", now_ms=0, reliable=None):
        """Queue one message; returns its sequence number.

        Raises ValueError if the payload is too large or too many reliable frames
        are already unacknowledged (the caller should wait and retry).
        """
        if reliable is None:
            reliable = mtype in RELIABLE_TYPES
        if reliable and len(self._pending) >= self.max_pending:
            raise ValueError("%d frames unacknowledged" % len(self._pending))
        seq = self._next_seq
        self._next_seq = (seq + 1) % SEQ_MODULO
        flags = FLAG_ACK_REQUESTED if reliable else 0
        wire = encode_frame(mtype, seq, payload, flags)
        self._output.extend(wire)
        if reliable:
            self._pending.append(_Pending(seq, mtype, wire, now_ms))
        return seq

    def receive(self, data, now_ms=0):
        """Feed received bytes; returns a list of Frame and DecodeError to act on."""
        delivered = []
        for item in self._decoder.feed(data):
            if isinstance(item, DecodeError):
                self.stats["rx_errors"] += 1
                if item.seq != NO_SEQ and item.code in (ERR_VERSION, ERR_UNKNOWN_TYPE):
                    self._reply(NACK, encode_nack(item.seq, item.code, item.reason))
                delivered.append(item)
                continue
            self.stats["rx_frames"] += 1
            if item.type == ACK:
                self._acknowledge(item.payload)
                continue
            if item.type == HELLO:
                self._seen = []
            if item.ack_requested:
                self._reply(ACK, encode_ack(item.seq))
                if item.seq in self._seen:
                    self.stats["duplicates"] += 1
                    continue
                self._seen.append(item.seq)
                if len(self._seen) > self._dedup_window:
                    self._seen.pop(0)
            if item.type == NACK:
                self._drop_nacked(item.payload)
            delivered.append(item)
        return delivered

    def nack(self, frame, code, reason):
        """Answer a frame the application could not accept (bad payload, refused)."""
        self._reply(NACK, encode_nack(frame.seq, code, reason))

    def poll(self, now_ms):
        """Retransmit reliable frames whose ACK is overdue; give up after max_tries."""
        keep = []
        for entry in self._pending:
            if elapsed_ms(now_ms, entry.sent_ms) < self.retry_ms:
                keep.append(entry)
            elif entry.tries >= self.max_tries:
                self.stats["gave_up"] += 1
                self._failed.append((entry.seq, entry.type))
            else:
                entry.tries += 1
                entry.sent_ms = now_ms
                self.stats["retries"] += 1
                self._output.extend(entry.wire)
                keep.append(entry)
        self._pending = keep

    def next_retry_ms(self, now_ms):
        """Milliseconds until poll() has a retransmission to make, or None if nothing waits."""
        if not self._pending:
            return None
        return max(0, min(self.retry_ms - elapsed_ms(now_ms, entry.sent_ms) for entry in self._pending))

    def take_output(self):
        out = bytes(self._output)
        self._output = bytearray()
        return out

    def take_failed(self):
        """(seq, type) of reliable frames never acknowledged, oldest first."""
        failed = self._failed
        self._failed = []
        return failed

    def _reply(self, mtype, payload):
        seq = self._next_seq
        self._next_seq = (seq + 1) % SEQ_MODULO
        self._output.extend(encode_frame(mtype, seq, payload, 0))

    def _acknowledge(self, payload):
        try:
            seq = decode_ack(payload)
        except ValueError:
            return
        self._pending = [entry for entry in self._pending if entry.seq != seq]

    def _drop_nacked(self, payload):
        # A NACKed frame will never be accepted: stop retrying it.
        try:
            seq = decode_nack(payload)[0]
        except ValueError:
            return
        for entry in self._pending:
            if entry.seq == seq:
                self._failed.append((entry.seq, entry.type))
        self._pending = [entry for entry in self._pending if entry.seq != seq]
