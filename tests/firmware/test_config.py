"""Config on the VM: CONFIG_GET/CONFIG_SET over the link, persisted with an atomic write;
corrupt files, unknown keys and out-of-range values are refused with a clear reason and
change nothing."""

from __future__ import annotations

import json

import pytest

from offhook import linkproto as L
from offhook.vm import MicroPythonVM
from tests.firmware import fw

DEFAULTS = {
    "brightness": 80,
    "button_map": ["hook", "mute", "hold", "escalate", "state", "vol_up", "vol_down"],
    "debounce_ms": 20,
    "double_press": ["state"],
    "double_press_ms": 300,
    "long_press_ms": 800,
}


def _config_frames(frames: list[L.Frame]) -> list[dict]:
    return [L.decode_json(f.payload) for f in frames if f.type == L.CONFIG]


def _file(vm: MicroPythonVM) -> str:
    return vm.run(
        "import os\ntry:\n    print(open('/config.json').read())\nexcept OSError:\n    print('<none>')\n"
        "print([n for n in os.listdir('/') if n.endswith('.tmp')])"
    ).check()


def _live(vm: MicroPythonVM) -> dict:
    code = "import json\ng = app.gestures\nprint(json.dumps([app.store.config, g.debounce_ms, g.long_ms]))"
    config, debounce, long_ms = json.loads(vm.run(code).check())
    assert (debounce, long_ms) == (config["debounce_ms"], config["long_press_ms"])
    return config


def test_get_all_and_some(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm)
    host = fw.Host(mpvm)
    host.send(L.CONFIG_GET, b"")
    host.send(L.CONFIG_GET, L.encode_json({"keys": ["brightness"]}))
    frames = host.run(50)
    assert _config_frames(frames) == [
        {"config": DEFAULTS, "error": None},
        {"config": {"brightness": 80}, "error": None},
    ]


def test_set_persists_atomically_and_applies(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm)
    host = fw.Host(mpvm)
    host.send(L.CONFIG_SET, L.encode_json({"long_press_ms": 1200, "brightness": 40}))
    frames = host.run(50)
    want = dict(DEFAULTS, long_press_ms=1200, brightness=40)
    assert _config_frames(frames) == [{"config": want, "error": None}]
    text, tmp = _file(mpvm).splitlines()
    assert json.loads(text) == want and tmp == "[]"
    assert _live(mpvm) == want
    # A restarted unit loads it without complaint.
    mpvm.run("app = vm_main.create()\napp.boot(0)").check()
    hello = next(L.decode_json(f.payload) for f in fw.take_frames(mpvm) if f.type == L.HELLO)
    assert "config_error" not in hello
    assert _live(mpvm) == want


REFUSED = {
    "out of range": ({"debounce_ms": 500}, "debounce_ms=500 out of range 5..100"),
    "too low": ({"brightness": 0}, "brightness=0 out of range 1..100"),
    "wrong type": ({"long_press_ms": "800"}, "long_press_ms must be an integer"),
    "bool is not an int": ({"brightness": True}, "brightness must be an integer"),
    "unknown key": ({"debounce_ms": 30, "colour": "red"}, "unknown config key 'colour'"),
    "unknown button": ({"double_press": ["state", "panic"]}, "double_press: unknown button 'panic'"),
    "button twice": (
        {"button_map": ["hook", "hook", "hold", "escalate", "state", "vol_up", "vol_down"]},
        "button_map: hook on more than one input",
    ),
    "short map": ({"button_map": ["hook"]}, "button_map must list 7 button names (one per input)"),
    "hook unmapped": (
        {"button_map": ["none", "mute", "hold", "escalate", "state", "vol_up", "vol_down"]},
        "button_map leaves hook unmapped",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_set_refused_changes_nothing(mpvm: MicroPythonVM, name: str) -> None:
    changes, reason = REFUSED[name]
    fw.boot(mpvm)
    host = fw.Host(mpvm)
    seq = host.send(L.CONFIG_SET, L.encode_json(changes))
    frames = host.run(50)
    assert [L.decode_nack(f.payload) for f in frames if f.type == L.NACK] == [(seq, L.ERR_REFUSED, reason)]
    assert _config_frames(frames) == []
    assert _file(mpvm).splitlines() == ["<none>", "[]"]
    assert _live(mpvm) == DEFAULTS


def test_set_not_json_is_refused(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm)
    host = fw.Host(mpvm)
    seq = host.send(L.CONFIG_SET, b"{debounce_ms: 5")
    frames = host.run(50)
    ((nseq, code, reason),) = [L.decode_nack(f.payload) for f in frames if f.type == L.NACK]
    assert (nseq, code) == (seq, L.ERR_BAD_PAYLOAD) and reason.startswith("payload is not JSON")
    assert _live(mpvm) == DEFAULTS


BAD_FILES = {
    "corrupt": (b'{"debounce_ms": 3', "config file is not valid JSON, using defaults"),
    "binary": (b"\xff\xfe\x00garbage", "config file is not valid JSON, using defaults"),
    "unknown key": (
        b'{"debounce_ms": 30, "turbo": 1}',
        "config file rejected (unknown config key 'turbo'), using defaults",
    ),
    "out of range": (
        b'{"long_press_ms": 10}',
        "config file rejected (long_press_ms=10 out of range 300..3000), using defaults",
    ),
    "not an object": (b"[1, 2]", "config file rejected (config must be a JSON object), using defaults"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_bad_file_falls_back_and_says_so(mpvm: MicroPythonVM, name: str) -> None:
    content, reason = BAD_FILES[name]
    fw.boot(mpvm, config=content)
    frames = fw.take_frames(mpvm)
    hello = next(L.decode_json(f.payload) for f in frames if f.type == L.HELLO)
    assert hello["config_error"] == reason
    assert [L.decode_log(f.payload) for f in frames if f.type == L.LOG] == [(L.LOG_WARNING, reason)]
    assert _live(mpvm) == DEFAULTS
    # The bad file is left alone (IT may want it) until a valid CONFIG_SET replaces it.
    assert mpvm.run(f"print(open('/config.json', 'rb').read() == {content!r})").check().strip() == "True"
