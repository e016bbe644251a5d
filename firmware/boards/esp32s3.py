"""ESP32-S3 (DevKitC-1 / any S3 module with native USB): pin map in hw/pins.md.

Avoids the strapping pins (0, 3, 45, 46), native USB (19, 20) and the flash/PSRAM
pins (26-37). LEDC has 8 PWM channels: the 7 LEDs each get one.
"""

import micropython
from micropython import const

NAME = "esp32s3"
BUTTON_PINS = (4, 5, 6, 7, 15, 16, 17)
LED_PINS = (8, 9, 10, 11, 12, 13, 14)
LED_CHANNELS = bytes((0, 3, 1, 3, 2, 3, 3, 3, 4, 0, 4, 1, 4, 2))
PWM_FREQ = const(1000)
WDT_MS = const(8000)
SAFE_MODE_INPUT = const(0)
CAPS = ("buttons", "leds_pwm", "rgb_status", "watchdog", "config")


def setup():
    micropython.kbd_intr(-1)


def link():
    from boards.cdc import CdcStream

    return CdcStream()
