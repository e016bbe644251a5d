# Runs before main.py on every reset. Kept minimal on purpose: the A/B slot boot loader
# (signed updates, safe mode) and the USB HID device configuration will live here; both
# must run before the USB stack and the application start.
