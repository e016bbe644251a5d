"""What the unit displays: the host's confirmed state plus local modes and request feedback.

The host is the source of truth. ``apply_state`` takes a STATE; a press only sets
the short ``feedback`` flash and a pending request, which either the link confirms
(host ACK) or fails after REQUEST_TIMEOUT_MS, setting ``refused`` for a moment.
Nothing here guesses a call or agent state. scenes.compose() reads these fields.
"""

from time import ticks_diff

from micropython import const

FEEDBACK_MS = const(80)  # "press received" flash
REFUSED_MS = const(600)  # "not confirmed" pattern (scenes.NOTCONF) duration
REQUEST_TIMEOUT_MS = const(1000)


class Unit:
    def __init__(self):
        self.host = 0  # 1 once the host daemon sent STATE in this session
        self.call = 0
        self.agent = 0
        self.flags = 0
        self.timer_s = 0
        self.hid = 0  # HID telephony host LEDs (linkproto.HID_LED_*), set by the USB HID layer
        self.safe_mode = 0
        self.updating = 0  # a local update in progress (besides the host's flag)
        self.feedback = 0
        self.refused = 0
        self.request_seq = -1  # link seq of the unconfirmed EVENT, or -1
        self._feedback_at = 0
        self._refused_at = 0
        self._request_at = 0
        self.changes = 0  # bumped on every displayed change (cheap "redraw" hint)

    def apply_state(self, call, agent, flags, timer_s):
        self.host = 1
        self.call = call
        self.agent = agent
        self.flags = flags
        self.timer_s = timer_s
        self.changes += 1

    def host_lost(self):
        """The host stopped answering or restarted: show "no host" until its next STATE."""
        self.host = 0
        self.changes += 1

    def pressed(self, seq, now):
        """A gesture was sent as EVENT ``seq`` (-1: could not even be queued)."""
        self.feedback = 1
        self._feedback_at = now
        self.refused = 0
        self.changes += 1
        if seq < 0:
            self._refuse(now)
        else:
            self.request_seq = seq
            self._request_at = now

    def confirmed(self, seq):
        if seq == self.request_seq:
            self.request_seq = -1

    def failed(self, seq, now):
        if seq == self.request_seq:
            self._refuse(now)

    def _refuse(self, now):
        self.request_seq = -1
        self.refused = 1
        self._refused_at = now
        self.changes += 1

    def tick(self, now):
        if self.feedback and ticks_diff(now, self._feedback_at) >= FEEDBACK_MS:
            self.feedback = 0
            self.changes += 1
        if self.request_seq >= 0 and ticks_diff(now, self._request_at) >= REQUEST_TIMEOUT_MS:
            self._refuse(now)
        if self.refused and ticks_diff(now, self._refused_at) >= REFUSED_MS:
            self.refused = 0
            self.changes += 1
