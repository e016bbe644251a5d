"""The link protocol over HID vendor reports 16 (in) and 17 (out): the unit's half.

Loaded by offhook_fw.hid only when the host first writes a vendor report (a daemon using the
HID transport), so a unit whose daemon uses CDC, or a softphone alone, never pays its RAM.
The report framing is /lib/hidframe.py, the same file the host's HID transport runs (hw/hid.md).
Rings with one writer per index: ``put``/``take`` (OUT callback / link task) and
``add``/``fill``+``sent`` (link task / IN pump).
"""

from hidframe import CHUNK, GAP, HEADER, REPORT_LINK_IN, REPORT_LINK_OUT, Reassembler, fill_report
from micropython import const

_TX = const(512)  # one maximum frame (491 bytes) fits
_RX = const(128)


class HidLink:
    def __init__(self):
        self.tx = bytearray(_TX)
        self.rx = bytearray(_RX)
        self.reports = Reassembler(REPORT_LINK_OUT)
        self.clear()

    def clear(self):
        self.txh = self.txt = self.txseq = self.n = 0
        self.rxh = self.rxt = 0
        self.reports.reset()

    # ------------------------------------------------------------ host -> unit

    def room(self):
        """A whole report fits (the OUT endpoint NAKs until it does)."""
        return (self.rxt - self.rxh - 1) % _RX > CHUNK

    def put(self, buf, count):
        """Report 17 (``buf[0]``) of ``count`` bytes into the receive ring."""
        got = self.reports.accept(buf, count)
        if got & GAP:
            self._rx(0)  # garbled, or a report went missing: end the half frame now
        for k in range(HEADER, HEADER + (got & 0xFF)):
            self._rx(buf[k])

    def _rx(self, byte):
        h = self.rxh
        if (h + 1) % _RX != self.rxt:  # never full with flow control; the CRC would catch it
            self.rx[h] = byte
            self.rxh = (h + 1) % _RX

    def take(self):
        t = self.rxt
        n = (self.rxh - t) % _RX
        if not n:
            return None
        out = bytearray(n)
        for k in range(n):
            out[k] = self.rx[(t + k) % _RX]
        self.rxt = (t + n) % _RX
        return out

    # ------------------------------------------------------------ unit -> host

    def add(self, data):
        """Queue link bytes; a write that does not fit is dropped whole (the link retries)."""
        n = len(data)
        if n >= _TX - (self.txt - self.txh) % _TX:
            return False
        t = self.txt
        tx = self.tx
        for k in range(n):
            tx[(t + k) % _TX] = data[k]
        self.txt = (t + n) % _TX
        return True

    def fill(self, buf):
        """The next report 16 into ``buf`` (64 bytes); its byte count, 0 if nothing waits."""
        n = (self.txt - self.txh) % _TX
        if n > CHUNK:
            n = CHUNK
        if n:
            fill_report(buf, REPORT_LINK_IN, self.txseq, self.tx, self.txh, n, _TX)
        self.n = n
        return n

    def sent(self):
        """The report ``fill`` made was submitted."""
        self.txh = (self.txh + self.n) % _TX
        self.txseq = (self.txseq + 1) & 0xFF
