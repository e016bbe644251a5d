"""The link protocol over USB HID vendor reports: the one framing both ends run (sans-IO).

Runs unchanged on CPython (``offhook.transport.hid``) and MicroPython 1.27 (the unit's
``offhook_fw.hidlink``, which loads it as the top-level module ``hidframe`` from /lib). hw/hid.md
has the layout: the link is a COBS byte stream with 0x00 delimiters, so it is simply cut into
reports of ``[report ID][count][seq][61 link bytes, zero padded]``, 64 bytes, one full-speed
interrupt packet. ``seq`` counts reports per direction (mod 256). After a missing report or a
garbled one the receiver puts a 0x00 into the stream first, so the half frame is dropped at once
instead of being glued to the next one (the frame CRC would catch that too; the link protocol's
retry resends it). Only ``fragment`` and ``Reassembler.feed`` (the host's) allocate.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):  # type: ignore[misc,unused-ignore]  # a redefinition under the MicroPython stubs only
        return value


VENDOR_USAGE_PAGE = const(0xFFA0)  # the link's collection in the report descriptor
VENDOR_USAGE = const(0x01)
REPORT_LINK_IN = const(0x10)  # unit -> host
REPORT_LINK_OUT = const(0x11)  # host -> unit
REPORT_SIZE = const(64)  # report ID + 63 bytes
HEADER = const(3)  # report ID, count, seq
CHUNK = const(61)  # link bytes per report
GAP = const(0x100)  # in Reassembler.accept's result: a 0x00 goes into the stream first


def fill_report(
    buf: bytearray, report_id: int, seq: int, src: bytes | bytearray, start: int, n: int, size: int
) -> None:
    """One report into ``buf`` (REPORT_SIZE bytes): ``n`` (at most CHUNK) link bytes of ``src`` from
    ``start`` on, indexes taken mod ``size`` (the unit's send ring wraps), the rest zero."""
    buf[0] = report_id
    buf[1] = n
    buf[2] = seq
    for k in range(CHUNK):
        buf[HEADER + k] = src[(start + k) % size] if k < n else 0


def fragment(data: bytes, seq: int) -> tuple[list[bytes], int]:
    """Cut link bytes into output reports (host -> unit); returns them and the next seq."""
    reports = []
    for start in range(0, len(data), CHUNK):
        report = bytearray(REPORT_SIZE)
        fill_report(report, REPORT_LINK_OUT, seq, data, start, min(CHUNK, len(data) - start), len(data))
        reports.append(bytes(report))
        seq = (seq + 1) & 0xFF
    return reports, seq


class Reassembler:
    """Link reports back into link bytes: ``accept`` checks one report (the unit copies its bytes
    into a ring); ``feed`` returns them as bytes (the host)."""

    def __init__(self, report_id: int = REPORT_LINK_IN) -> None:
        self.report_id = report_id
        self.expected = -1  # seq of the next report; -1: any
        self.lost = 0  # reports missing by seq
        self.garbled = 0  # reports whose count does not fit

    def reset(self) -> None:
        self.expected = -1

    def accept(self, report: bytes | bytearray, length: int) -> int:
        """A link report of ``length`` bytes, its ID first -> the count of link bytes it carries
        (from ``report[HEADER]`` on), plus GAP when a 0x00 must go into the stream before them."""
        n = report[1] if length >= HEADER else 255
        if n > CHUNK or length < HEADER + n:
            self.garbled += 1
            self.expected = -1
            return GAP
        seq = report[2]
        expected = self.expected
        self.expected = (seq + 1) & 0xFF
        if expected < 0 or seq == expected:
            return n
        self.lost += (seq - expected) & 0xFF
        return n | GAP

    def feed(self, report: bytes) -> bytes:
        """One report as hidapi returns it (its ID first) -> link bytes; b"" if not a link report."""
        if not report or report[0] != self.report_id:
            return b""  # telephony/consumer reports and other collections: not the link
        got = self.accept(report, len(report))
        data = bytes(report[HEADER : HEADER + (got & 0xFF)])
        return b"\x00" + data if got & GAP else data
