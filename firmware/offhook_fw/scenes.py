"""Scenes: a pure function from everything the unit displays to one pattern and colour per lamp.

``compose(view, out)`` reads the displayed state from ``view`` (a unit.Unit) and
writes NLAMPS x (pattern, r, g, b) bytes into ``out``; leds.Renderer turns that into
PWM duty values. The same table, for people, is hw/scenes.md (tests check both agree).
No allocation: it only reads attributes and writes into the preallocated bytearray.
"""

from micropython import const

# Lamps (a lamp is one mono LED or one RGB LED; boards map lamps to PWM channels), patterns
# and colours are private const()s, inlined at compile time so they cost no RAM; their
# numbers are fixed here and repeated in leds.py and hw/scenes.md (tests check all three).
_LAMP_HOOK = const(0)  # green, in the answer/hang-up button
_LAMP_MUTE = const(1)  # red, in the mute button
_LAMP_HOLD = const(2)  # amber, in the hold button
_LAMP_ESCALATE = const(3)  # blue, in the escalate button
_LAMP_STATUS = const(4)  # RGB: agent state, link, requests, unit modes
NLAMPS = const(5)

# Patterns (leds.level() gives the brightness of each over time).
_OFF = const(0)
_SOLID = const(1)
_DIM = const(2)  # solid at 1/6
_BLINK = const(3)  # 500 ms on / 500 ms off
_FAST = const(4)  # 125 ms on / 125 ms off
_RING = const(5)  # two 300 ms pulses every 2 s, like a ringing phone
_BREATHE = const(6)  # 4 s sine breathing
_WAITING = const(7)  # two 100 ms blips every 1.5 s: a second call is waiting
_REMIND = const(8)  # three 100 ms flashes every 2 s: the call has been on hold a while
_WINK = const(9)  # 80 ms every 2 s: alive, but no host daemon
_PAIR = const(10)  # 1 s sine breathing: a pairing request waits for an answer
_RAMP = const(11)  # 1 s sawtooth: update in progress
_NOTCONF = const(12)  # three 100 ms blinks once: the last press was not confirmed
_FLASH = const(13)  # solid while shown: a press was received

# linkproto numbers under linkproto's names, repeated as const() so the hot path inlines them
# (tests/test_one_source.py compares each with linkproto).
_CALL_RINGING = const(1)
_CALL_DIALING = const(2)
_CALL_ACTIVE = const(3)
_CALL_HELD = const(4)
_AGENT_AVAILABLE = const(1)
_AGENT_ON_CALL = const(2)
_AGENT_WRAP_UP = const(3)
_AGENT_BREAK = const(4)
_STATE_MUTED = const(0x0001)
_STATE_MUTE_UNCONFIRMED = const(0x0002)
_STATE_HOLD_REMINDER = const(0x0004)
_STATE_CALL_WAITING = const(0x0008)
_STATE_CONSULT = const(0x0010)
_STATE_IDENTIFY = const(0x0020)
_STATE_PAIRING = const(0x0040)
_STATE_UPDATING = const(0x0080)
_STATE_RECORDING = const(0x0200)
_STATE_RECORDING_PAUSED = const(0x0400)
_STATE_RECORDING_FAILED = const(0x0800)

# HID telephony host LEDs (set by the USB HID layer when a softphone drives them).
_HID_LED_OFF_HOOK = const(0x01)
_HID_LED_MUTE = const(0x02)
_HID_LED_RING = const(0x04)
_HID_LED_HOLD = const(0x08)

# Colours as 0xRRGGBB (small ints, no allocation).
_GREEN = const(0x00FF00)
_RED = const(0xFF0000)
_AMBER = const(0xFF6000)
_YELLOW = const(0xFFC000)
_BLUE = const(0x0000FF)
_MAGENTA = const(0xC000FF)
_WHITE = const(0xFFFFFF)


def _set(out, lamp, pattern, colour):
    base = lamp * 4
    out[base] = pattern
    out[base + 1] = (colour >> 16) & 0xFF
    out[base + 2] = (colour >> 8) & 0xFF
    out[base + 3] = colour & 0xFF


def compose(v, out):
    """Write the scene for view ``v`` into ``out`` (bytearray of NLAMPS * 4)."""
    for lamp in range(NLAMPS):
        _set(out, lamp, _OFF, 0)
    flags = v.flags if v.host else 0
    if v.safe_mode:
        _set(out, _LAMP_STATUS, _BLINK, _RED)
        return
    if v.updating or flags & _STATE_UPDATING:
        _set(out, _LAMP_STATUS, _RAMP, _BLUE)
        return
    if flags & _STATE_IDENTIFY:
        for lamp in range(NLAMPS):
            _set(out, lamp, _FAST, _WHITE)
    else:
        if v.host:
            _call_lamps(v.call, flags, out)
            _agent_lamp(v.agent, out)
            _recording_lamp(flags, out)
            if flags & _STATE_PAIRING:
                _set(out, _LAMP_HOOK, _BLINK, _GREEN)
                _set(out, _LAMP_STATUS, _PAIR, _BLUE)
        else:
            _hid_lamps(v.hid, out)
            _set(out, _LAMP_STATUS, _WINK, _AMBER)
    # Request feedback draws over every scene except safe mode and updates.
    if v.feedback:
        _set(out, _LAMP_STATUS, _FLASH, _WHITE)
    elif v.refused:
        _set(out, _LAMP_STATUS, _NOTCONF, _RED)


def _call_lamps(call, flags, out):
    if call == _CALL_RINGING:
        _set(out, _LAMP_HOOK, _RING, _GREEN)
    elif call == _CALL_DIALING:
        _set(out, _LAMP_HOOK, _FAST, _GREEN)
    elif call == _CALL_ACTIVE:
        _set(out, _LAMP_HOOK, _SOLID, _GREEN)
    elif call == _CALL_HELD:
        _set(out, _LAMP_HOOK, _DIM, _GREEN)
        _set(out, _LAMP_HOLD, _BLINK, _AMBER)
    if flags & _STATE_CALL_WAITING:
        _set(out, _LAMP_HOOK, _WAITING, _GREEN)
    if flags & _STATE_HOLD_REMINDER:
        _set(out, _LAMP_HOLD, _REMIND, _AMBER)
    if flags & _STATE_MUTE_UNCONFIRMED:
        _set(out, _LAMP_MUTE, _FAST, _RED)
    elif flags & _STATE_MUTED:
        _set(out, _LAMP_MUTE, _SOLID, _RED)
    if flags & _STATE_CONSULT:
        _set(out, _LAMP_ESCALATE, _SOLID, _BLUE)


def _agent_lamp(agent, out):
    if agent == _AGENT_AVAILABLE:
        _set(out, _LAMP_STATUS, _SOLID, _GREEN)
    elif agent == _AGENT_ON_CALL:
        _set(out, _LAMP_STATUS, _SOLID, _RED)
    elif agent == _AGENT_WRAP_UP:
        _set(out, _LAMP_STATUS, _BREATHE, _YELLOW)
    elif agent == _AGENT_BREAK:
        _set(out, _LAMP_STATUS, _SOLID, _MAGENTA)
    else:  # offline
        _set(out, _LAMP_STATUS, _DIM, _WHITE)


def _recording_lamp(flags, out):
    # The status lamp's "on a call" red says whether the call is recorded: breathing while it is,
    # blinking amber while paused (like a held call), fast red when the recording stopped on an error.
    if flags & _STATE_RECORDING_FAILED:
        _set(out, _LAMP_STATUS, _FAST, _RED)
    elif flags & _STATE_RECORDING_PAUSED:
        _set(out, _LAMP_STATUS, _BLINK, _AMBER)
    elif flags & _STATE_RECORDING:
        _set(out, _LAMP_STATUS, _BREATHE, _RED)


def _hid_lamps(hid, out):
    # No host daemon: a softphone speaking USB HID telephony drives the call lamps.
    if hid & _HID_LED_RING:
        _set(out, _LAMP_HOOK, _RING, _GREEN)
    elif hid & _HID_LED_OFF_HOOK:
        _set(out, _LAMP_HOOK, _SOLID, _GREEN)
    if hid & _HID_LED_MUTE:
        _set(out, _LAMP_MUTE, _SOLID, _RED)
    if hid & _HID_LED_HOLD:
        _set(out, _LAMP_HOLD, _BLINK, _AMBER)
