"""Simulated board for the MicroPython VM (tests, ``offhook sim``). Not installed on units.

Pins and PWM come from the simulated ``machine`` module (firmware/sim/machine.py,
installed in the VM as /lib/machine.py). The link is LINK, an in-memory byte queue:
the test or the simulator's bridge calls ``LINK.host_write(data)`` to send to the
unit and ``LINK.host_read()`` to take what the unit sent.
"""

import binascii

from micropython import const

NAME = "sim"
BUTTON_PINS = (2, 3, 4, 5, 6, 7, 8)  # same as the Pico, so pin maps read alike
LED_PINS = (10, 11, 12, 13, 14, 15, 16)
LED_CHANNELS = bytes((0, 3, 1, 3, 2, 3, 3, 3, 4, 0, 4, 1, 4, 2))
PWM_FREQ = const(1000)
WDT_MS = const(8000)
SAFE_MODE_INPUT = const(0)
CAPS = ("buttons", "leds_pwm", "rgb_status", "watchdog", "config", "sim")


class ByteQueueLink:
    def __init__(self):
        self._to_unit = bytearray()
        self._from_unit = bytearray()

    # unit side (the board's link stream)
    def read(self):
        if not self._to_unit:
            return None
        data = bytes(self._to_unit)
        self._to_unit = bytearray()
        return data

    def write(self, data):
        self._from_unit.extend(data)

    # host side (tests, the simulator's pty bridge)
    def host_write(self, data):
        self._to_unit.extend(data)

    def host_read(self):
        data = bytes(self._from_unit)
        self._from_unit = bytearray()
        return data

    # hex forms for a JavaScript bridge (hex strings cross the JS/Python boundary simply)
    def host_write_hex(self, text):
        self._to_unit.extend(binascii.unhexlify(text))

    def host_read_hex(self):
        return binascii.hexlify(self.host_read()).decode()


LINK = ByteQueueLink()


def setup():
    pass


def link():
    return LINK
