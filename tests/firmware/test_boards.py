"""Board modules: consistent pin data, buildable on the simulated machine module; and the
firmware keeps stdout (the link on a real board) free of print()."""

from __future__ import annotations

import json
import re

import pytest

from offhook.firmware import device_files
from offhook.vm import MicroPythonVM
from tests.firmware import fw

CHECK = """
import boards, json
b = boards.load({name!r})
h = boards.Hardware(b)
print(json.dumps({{
    "name": b.NAME, "buttons": list(b.BUTTON_PINS), "leds": list(b.LED_PINS),
    "channels": list(b.LED_CHANNELS), "wdt": b.WDT_MS, "caps": list(b.CAPS),
    "inputs": len(h.inputs), "pwms": len(h.pwms), "serial": h.serial, "safe": h.safe_mode_held(),
}}))
"""


@pytest.mark.parametrize("name", ["pico", "esp32s3", "sim"])
def test_board_data(mpvm: MicroPythonVM, name: str) -> None:
    fw.load(mpvm)
    board = json.loads(mpvm.run(CHECK.format(name=name)).check())
    assert board["name"] == name
    assert len(board["buttons"]) == 7 and board["inputs"] == 7
    assert len(board["leds"]) == board["pwms"] == len(board["channels"]) // 2 == 7
    assert len(set(board["buttons"] + board["leds"])) == 14, "a pin is used twice"
    lamps = [(board["channels"][i], board["channels"][i + 1]) for i in range(0, len(board["channels"]), 2)]
    assert sorted(lamps) == [(0, 3), (1, 3), (2, 3), (3, 3), (4, 0), (4, 1), (4, 2)]
    assert 0 < board["wdt"] <= 8388  # the RP2040's WDT limit; the S3 allows more
    assert board["serial"] == "0ff0514d00000001" and board["safe"] is False
    if name == "esp32s3":
        assert not {0, 3, 19, 20, 45, 46} & set(board["buttons"] + board["leds"])


def test_firmware_never_prints() -> None:
    """On a board stdout is the link: a print() would corrupt frames."""
    for device_path, source in device_files().items():
        if device_path.startswith(("/offhook_fw/", "/boards/", "/main.py", "/boot.py")):
            code = re.sub(r'""".*?"""|#.*', "", source.read_text(), flags=re.S)
            assert not re.search(r"\bprint\(", code), f"{device_path} prints"
