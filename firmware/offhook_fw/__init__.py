"""offhook desk-unit application (MicroPython 1.27).

Pure or sans-IO modules (time passed in as ticks_ms values), composed by app.py:
gestures (debounce, long/double press), scenes (displayed state -> LED patterns),
leds (patterns -> PWM duty), config (validated JSON on flash), unit (displayed
state and request feedback), session (the link protocol over a byte stream).
Only boards/ knows pin numbers.
"""

VERSION = "0.1.0"
