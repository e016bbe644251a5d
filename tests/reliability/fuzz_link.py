"""Link-protocol fuzzer that runs unchanged on CPython and on the MicroPython VM.

``fuzz(L, seed, count)`` feeds ``count`` random and mutated frames (bit flips, inserted,
deleted and zeroed bytes, truncations, splices, garbage runs, oversize runs) through one
long-lived Decoder and one long-lived Link, as a unit or a daemon would see them over
a day. It returns counters and every exception that escaped (there must be none);
every 64 cases it checks that a good frame after a delimiter still decodes (recovery).
A small xorshift PRNG keeps the case stream identical on both runtimes.
"""


class XorShift:
    def __init__(self, seed):
        self.state = (seed or 1) & 0xFFFFFFFF

    def next(self):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def below(self, n):
        return self.next() % n


def seeds(L):
    """Valid frames of every message type, the material mutations start from."""
    frames = [
        L.encode_frame(L.HELLO, 1, L.encode_json({"proto": 1, "fw": "0.1.0", "board": "pico", "serial": "ab"}), 1),
        L.encode_frame(L.ACK, 2, L.encode_ack(1)),
        L.encode_frame(L.NACK, 3, L.encode_nack(2, L.ERR_CRC, "crc")),
        L.encode_frame(L.EVENT, 4, L.encode_event(1, 1, 1234), 1),
        L.encode_frame(L.STATE, 5, L.encode_state(3, 2, 5, 9), 1),
        L.encode_frame(L.CONFIG_SET, 6, L.encode_json({"brightness": 50}), 1),
        L.encode_frame(L.UPDATE_CHUNK, 7, L.encode_chunk(0, bytes(range(200))), 1),
        L.encode_frame(L.LOG, 8, L.encode_log(30, "warning"), 0),
        L.encode_frame(L.PING, 9, L.encode_ping(7), 0),
    ]
    return frames


def mutate(rng, frames, L):
    base = bytearray(frames[rng.below(len(frames))])
    kind = rng.below(10)
    if kind == 0:  # pure garbage
        return bytes(rng.below(256) for _ in range(rng.below(80)))
    if kind == 1:  # oversize run without a delimiter
        return bytes(1 + rng.below(255) for _ in range(L.MAX_ENCODED + rng.below(200)))
    if kind == 2 and len(base) > 2:  # truncated
        return bytes(base[: rng.below(len(base) - 1)])
    if kind == 3:  # spliced with another frame
        other = frames[rng.below(len(frames))]
        cut = rng.below(len(base))
        return bytes(base[:cut]) + other[rng.below(len(other)) :]
    flips = 1 + rng.below(4)
    for _ in range(flips):
        if not base:
            break
        at = rng.below(len(base))
        op = rng.below(4)
        if op == 0:
            base[at] ^= 1 << rng.below(8)
        elif op == 1:  # MicroPython's bytearray has no insert() or item deletion: slice
            base = base[:at] + bytearray((rng.below(256),)) + base[at:]
        elif op == 2:
            base = base[:at] + base[at + 1 :]
        else:
            base[at] = 0  # a stray delimiter splits the frame
    return bytes(base)


class Fuzzer:
    """A long-lived decoder and link under a stream of bad input; ``run`` can be called
    again and again (memory is measured between calls)."""

    def __init__(self, L, seed):
        self.L = L
        self.rng = XorShift(seed)
        self.frames = seeds(L)
        self.good = self.frames[4]
        self.decoder = L.Decoder()
        self.link = L.Link()
        self.now = 0
        self.stats = {"cases": 0, "frames": 0, "errors": 0, "link_frames": 0, "not_recovered": 0, "escaped": []}

    def run(self, count):
        L, stats, decoder, link = self.L, self.stats, self.decoder, self.link
        for _ in range(count):
            data = mutate(self.rng, self.frames, L)
            self.now += 1
            try:
                for item in decoder.feed(data):
                    if isinstance(item, L.Frame):
                        stats["frames"] += 1
                    else:
                        stats["errors"] += 1
                stats["link_frames"] += len(link.receive(data, self.now))
                link.poll(self.now)
                link.take_output()
                link.take_failed()
            except Exception as exc:  # the point is that nothing may escape
                if len(stats["escaped"]) < 10:
                    stats["escaped"].append("%s: %r" % (type(exc).__name__, data))
            stats["cases"] += 1
            if stats["cases"] % 64 == 0:
                items = decoder.feed(b"\x00" + self.good)
                if not items or not isinstance(items[-1], L.Frame) or items[-1].seq != 5:
                    stats["not_recovered"] += 1
        return stats


def fuzz(L, seed, count):
    return Fuzzer(L, seed).run(count)
