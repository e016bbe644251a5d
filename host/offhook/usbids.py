"""offhook's USB IDs, written once: the unit puts them in its device descriptor (firmware/usb_setup.py,
which loads this file from /lib as the top-level module ``usbids``) and the host finds units by them
(``offhook.transport.discovery``, ``offhook.transport.hid``). Runs on CPython and MicroPython.
The allocation and its rules: hw/usb-ids.md (and hw/99-offhook.rules for udev).
"""

VID = 0x1209  # pid.codes, the vendor ID of open-source hardware
TEST_PID = 0x0001  # the pid.codes test PID: benches and labs only, shared by every project
PID = TEST_PID  # until pid.codes allocates offhook's own

# Host side (hw/usb-ids.md, "How the host finds units"): a serial port with offhook's IDs is a unit;
OFFHOOK_USB_IDS = {(VID, PID)}
# a HID interface on the shared test PID is offhook's only when its USB strings say so;
DEV_USB_IDS = {(VID, TEST_PID)}
# a board still on stock MicroPython's descriptors (RP2040, ESP32-S3) is a unit if it answers HELLO.
STOCK_MICROPYTHON_IDS = {(0x2E8A, 0x0005), (0x303A, 0x4001)}
