"""Raspberry Pi Pico (RP2040): pin map in hw/pins.md. Default board."""

import micropython
from micropython import const

NAME = "pico"
# Inputs K1..K7 (default mapping: hook, mute, hold, escalate, state, vol_up, vol_down).
BUTTON_PINS = (2, 3, 4, 5, 6, 7, 8)
# One PWM output per LED; each pin is on its own slice channel (GP10..GP15: slices 5-7, GP16: 0A).
LED_PINS = (10, 11, 12, 13, 14, 15, 16)
# (lamp, component) per LED pin: hook, mute, hold, escalate mono; status RGB (R, G, B).
LED_CHANNELS = bytes((0, 3, 1, 3, 2, 3, 3, 3, 4, 0, 4, 1, 4, 2))
PWM_FREQ = const(1000)
WDT_MS = const(8000)  # RP2040 maximum is 8388 ms
SAFE_MODE_INPUT = const(0)  # K1 (hook) held at power-on
CAPS = ("buttons", "leds_pwm", "rgb_status", "watchdog", "config")


def setup():
    micropython.kbd_intr(-1)  # 0x03 on the link is data, not KeyboardInterrupt


def link():
    from boards.cdc import CdcStream

    return CdcStream()
