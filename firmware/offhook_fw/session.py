"""The unit's end of the link protocol, over a byte stream (USB CDC or the simulator's queue).

``Session.step(now)`` reads what arrived, acts on it, retransmits, and writes.
The stream object (from the board layer) has ``read() -> bytes | None`` that never
blocks and ``write(data)``. This module never prints: on a real board stdout is the link.
"""

import io
import sys

import linkproto as L

from offhook_fw import VERSION

HELLO_RETRY_MS = 3000  # while no host answers, say HELLO again this often
# 4 sends 250 ms apart: an unacknowledged EVENT fails at 1 s, the unit's request timeout,
# so a press shown as "not confirmed" is never retransmitted afterwards.
RETRY_MS = 250
MAX_TRIES = 4


class Session:
    def __init__(self, stream, unit, identity, store):
        """identity: dict for HELLO (board, serial, caps, ...); store: app.ConfigStore."""
        self.stream = stream
        self.unit = unit
        self.identity = identity
        self.store = store
        self.link = L.Link(retry_ms=RETRY_MS, max_tries=MAX_TRIES)
        self._hello_at = 0
        self._hello_seq = -1
        self._heard_at = 0  # when a valid frame last arrived from the host
        self.started = False
        self.receiver = None  # updater.Receiver, imported when the first UPDATE arrives
        self.reboot = False  # a new slot is switched in: the app resets the board
        self._now = 0
        self._leds = 0  # HID LEDs last reported to the host; -1: its daemon NACKed HID_LEDS

    # ------------------------------------------------------------ outgoing

    def start(self, now):
        """(Re)open the session: forget what was in flight and say HELLO."""
        self._restart(now)
        self.started = True
        self.flush()

    def _restart(self, now):
        # A press not yet acknowledged is lost on purpose (PROTOCOL.md, resynchronisation):
        # show it as not confirmed rather than let a new session deliver it late.
        if self.unit.request_seq >= 0:
            self.unit.failed(self.unit.request_seq, now)
        self.link.reset()
        self.unit.host_lost()
        self._leds = 0
        self._send_hello(now)

    def flush(self):
        out = self.link.take_output()
        if out:
            self.stream.write(out)

    def _send_hello(self, now):
        hello = {"proto": L.PROTOCOL_VERSION, "fw": VERSION}
        for key in self.identity:
            hello[key] = self.identity[key]
        if self.store.error:
            hello["config_error"] = self.store.error
        bootsel = sys.modules.get("bootsel")  # present when boot.py chose the slot
        if bootsel is not None and bootsel.BOOT:
            hello["slot"] = bootsel.BOOT[0]
            hello["health"] = bootsel.health()
            if bootsel.BOOT[1]:
                hello["boot"] = bootsel.BOOT[1]  # e.g. "rolled back from slot a: ..."
        self._hello_at = now
        self._hello_seq = self._send(L.HELLO, L.encode_json(hello), now)

    def _send(self, mtype, payload, now):
        try:
            return self.link.send(mtype, payload, now)
        except ValueError:  # 16 frames unacknowledged: the host is not listening
            return -1

    def event(self, button, gesture, now):
        """Send one gesture; returns its seq, or -1 if the link could not take it."""
        return self._send(L.EVENT, L.encode_event(button, gesture, now), now)

    def log(self, level, text, now=0):
        self._send(L.LOG, L.encode_log(level, text), now)

    def log_exception(self, where, exc, now=0):
        buf = io.StringIO()
        sys.print_exception(exc, buf)  # type: ignore[attr-defined]
        self.log(L.LOG_ERROR, "%s crashed: %s" % (where, buf.getvalue()), now)

    # ------------------------------------------------------------ one step

    def step(self, now):
        self._now = now
        data = self.stream.read()
        if data:
            for item in self.link.receive(data, now):
                if isinstance(item, L.Frame):
                    self._heard_at = now
                    self._handle(item, now)
        unit = self.unit
        if unit.request_seq >= 0 and not self.link.in_flight(unit.request_seq):
            unit.confirmed(unit.request_seq)
        if unit.host:
            # What a HID softphone set, for the daemon to fold in (after its first STATE if non-zero).
            leds = unit.hid
            if leds != self._leds and self._leds >= 0 and self._send(L.HID_LEDS, L.encode_hid_leds(leds), now) >= 0:
                self._leds = leds
        elif self._leds > 0:
            self._leds = 0  # the next daemon session hears the current LEDs anew
        self.link.poll(now)
        for seq, mtype in self.link.take_failed():
            if mtype == L.HID_LEDS:
                self._leds = -1  # a daemon older than HID_LEDS NACKs it: not sent again this session
            unit.failed(seq, now)
            if unit.host and (now - self._heard_at) & 0x3FFFFFFF >= RETRY_MS * MAX_TRIES:
                unit.host_lost()  # unacknowledged and nothing heard meanwhile: show "no host"
        if self.receiver is not None:
            self.receiver.poll(self.busy())
            self.reboot = self.receiver.reboot
        if not unit.host and (now - self._hello_at) & 0x3FFFFFFF >= HELLO_RETRY_MS:
            if not self.link.in_flight(self._hello_seq):
                self._send_hello(now)
        self.flush()

    def _handle(self, frame, now):
        mtype = frame.type
        if mtype == L.HELLO:
            # The host (re)started: it resends the whole STATE after our HELLO.
            ack = self.link.take_output()
            if ack:
                self.stream.write(ack)
            self._restart(now)
        elif mtype == L.STATE:
            try:
                call, agent, flags, timer_s = L.decode_state(frame.payload)
            except ValueError as exc:
                self.link.nack(frame, L.ERR_BAD_PAYLOAD, str(exc))
                return
            self.unit.apply_state(call, agent, flags, timer_s)
        elif mtype == L.CONFIG_GET:
            self._config_get(frame, now)
        elif mtype == L.CONFIG_SET:
            self._config_set(frame, now)
        elif mtype == L.PING:
            self._send(L.PONG, frame.payload, now)
        elif mtype in (L.UPDATE_BEGIN, L.UPDATE_CHUNK, L.UPDATE_COMMIT, L.UPDATE_ABORT):
            self._update(frame, now)
        # ACK/NACK/LOG/PONG and unit-to-host types need nothing from the unit.

    def _config_get(self, frame, now):
        try:
            request = L.decode_json(frame.payload) if frame.payload else {}
            keys = request.get("keys") or sorted(self.store.config)
            shown = {}
            for key in keys:
                if key not in self.store.config:
                    raise ValueError("unknown config key %r" % (key,))
                shown[key] = self.store.config[key]
        except (ValueError, TypeError, AttributeError) as exc:
            self.link.nack(frame, L.ERR_BAD_PAYLOAD, str(exc))
            return
        self._send(L.CONFIG, L.encode_json({"config": shown, "error": None}), now)

    def _config_set(self, frame, now):
        try:
            changes = L.decode_json(frame.payload)
        except ValueError as exc:
            self.link.nack(frame, L.ERR_BAD_PAYLOAD, str(exc))
            return
        reason = self.store.update(changes)
        if reason:
            self.link.nack(frame, L.ERR_REFUSED, reason)
            return
        self._send(L.CONFIG, L.encode_json({"config": self.store.config, "error": None}), now)

    # ------------------------------------------------------------ updates (fleet docs)

    def busy(self):
        """A call or its wrap-up: a new slot waits, the unit never resets mid-call."""
        unit = self.unit
        return unit.call != L.CALL_IDLE or unit.agent in (L.AGENT_ON_CALL, L.AGENT_WRAP_UP)

    def _update(self, frame, now):
        if self.receiver is None:
            import updater  # lazily: only a unit being updated pays its heap

            self.receiver = updater.Receiver(self.identity["board"], VERSION, self._send_now)
        receiver = self.receiver
        reason = receiver.handle(frame, self.busy())
        if reason:
            up = receiver.updater
            if up is not None:  # a chunk ahead of what arrived (one was lost): say where to resume
                receiver.status("receiving", {"progress": up.received, "size": receiver.size, "resume": up.received})
            self.link.nack(frame, L.ERR_REFUSED, reason)
        self.unit.updating = 1 if self.receiver.updater is not None and not self.receiver.reboot else 0
        self.reboot = self.receiver.reboot

    def _send_now(self, mtype, payload):
        self._send(mtype, payload, self._now)

    def confirm_health(self, now):
        """The main loop runs and the self-test passed: keep this slot (no host needed)."""
        bootsel = sys.modules.get("bootsel")
        if bootsel is not None and bootsel.confirm():
            status = {"phase": "confirmed", "fw": VERSION, "slot": bootsel.BOOT[0] if bootsel.BOOT else ""}
            self._send(L.UPDATE_STATUS, L.encode_json(status), now)
