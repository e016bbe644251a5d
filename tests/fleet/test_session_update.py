"""The firmware's session on the VM (explicit time): an update arriving during a call is received
and verified, then the switch waits until the call and wrap-up end; the unit shows "updating"."""

from __future__ import annotations

import json

from offhook import linkproto as L
from offhook.vm import MicroPythonVM
from tests.firmware import fw
from tests.fleet import keyring

FILES = {"/offhook_fw/app.mpy": b"M\x06" + b"new app " * 200, "/offhook_fw/__init__.mpy": b"M\x06v"}


def _statuses(frames: list[L.Frame]) -> list[dict]:
    seen, out = set(), []
    for frame in frames:
        if frame.type == L.UPDATE_STATUS and frame.seq not in seen:
            seen.add(frame.seq)
            out.append(L.decode_json(frame.payload))
    return out


def test_update_during_a_call_is_deferred_until_idle(mpvm: MicroPythonVM) -> None:
    fw.load(mpvm)
    mpvm.put("/keys.json", json.dumps({"n": keyring.n_hex(0)}))
    mpvm.run(fw.VM_PRELUDE + "import bootsel\nbootsel.BOOT = ('factory', '')\napp = vm_main.create()\napp.boot(0)\n")
    host = fw.Host(mpvm)
    host.send(L.STATE, L.encode_state(L.CALL_ACTIVE, L.AGENT_ON_CALL))
    host.run(50)
    data = keyring.signed(FILES, "0.2.0", board="sim")
    host.send(L.UPDATE_BEGIN, L.encode_json({"size": len(data), "version": "0.2.0", "board": "sim"}))
    for offset in range(0, len(data), 476):
        host.send(L.UPDATE_CHUNK, L.encode_chunk(offset, data[offset : offset + 476]))
        if host.link.pending >= 12:
            host.run(host.t + 40)
    host.run(host.t + 200)
    assert mpvm.run("print(app.unit.updating)").check().strip() == "1"
    host.send(L.UPDATE_COMMIT)
    frames = host.run(host.t + 200)
    assert _statuses(frames)[-1]["phase"] == "deferred"
    assert mpvm.run("print(app.session.reboot)").check().strip() == "False"
    host.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_WRAP_UP))
    host.run(host.t + 100)
    assert mpvm.run("print(app.session.reboot)").check().strip() == "False", "not during wrap-up"
    host.send(L.STATE, L.encode_state(L.CALL_IDLE, L.AGENT_AVAILABLE))
    frames = host.run(host.t + 100)
    assert [s["phase"] for s in _statuses(frames)] == ["rebooting"]
    state = json.loads(mpvm.run("print(open('/boot_state.json').read())").check())
    assert (state["active"], state["confirmed"], mpvm.run("print(app.session.reboot)").check().strip()) == (
        "a",
        False,
        "True",
    )


def test_refused_update_is_nacked_with_the_reason(mpvm: MicroPythonVM) -> None:
    fw.load(mpvm)
    mpvm.put("/keys.json", json.dumps({"n": keyring.n_hex(0)}))
    mpvm.run(fw.VM_PRELUDE + "app = vm_main.create()\napp.boot(0)\n")
    host = fw.Host(mpvm)
    data = keyring.signed(FILES, "0.2.0", board="pico")  # the unit is a sim board
    host.send(L.UPDATE_BEGIN, L.encode_json({"size": len(data)}))
    for offset in range(0, len(data), 476):
        host.send(L.UPDATE_CHUNK, L.encode_chunk(offset, data[offset : offset + 476]))
    frames = host.run(300)
    nacks = [L.decode_nack(f.payload) for f in frames if f.type == L.NACK]
    assert nacks and nacks[0][1] == L.ERR_REFUSED and "bundle is for board pico, this unit is sim" in nacks[0][2]
    assert next(s for s in _statuses(frames) if s["phase"] == "failed")["reason"] == nacks[0][2]
    assert mpvm.run("import os\nprint('slot_a' in os.listdir('/'))").check().strip() == "False"


def test_a_chunk_ahead_says_where_to_resume_in_update_status_and_the_nack(mpvm: MicroPythonVM) -> None:
    """One chunk lost in the window: the next is refused with the old NACK text (older hosts parse
    it) and UPDATE_STATUS carries ``resume``; HELLO's caps say the unit sends it."""
    fw.load(mpvm)
    mpvm.put("/keys.json", json.dumps({"n": keyring.n_hex(0)}))
    mpvm.run(fw.VM_PRELUDE + "import bootsel\nbootsel.BOOT = ('factory', '')\napp = vm_main.create()\napp.boot(0)\n")
    host = fw.Host(mpvm)
    hello = next(L.decode_json(f.payload) for f in host.run(20) if f.type == L.HELLO)
    assert "update_resume" in hello["caps"]
    data = keyring.signed(FILES, "0.2.0", board="sim")
    host.send(L.UPDATE_BEGIN, L.encode_json({"size": len(data), "version": "0.2.0", "board": "sim"}))
    host.send(L.UPDATE_CHUNK, L.encode_chunk(0, data[:476]))
    ahead = host.send(L.UPDATE_CHUNK, L.encode_chunk(952, data[952:1428]))  # 476 never arrived
    frames = host.run(host.t + 100)
    nacks = [L.decode_nack(f.payload) for f in frames if f.type == L.NACK]
    assert nacks == [(ahead, L.ERR_REFUSED, "expected offset 476")]
    assert [s for s in _statuses(frames) if "resume" in s] == [
        {"phase": "receiving", "progress": 476, "size": len(data), "resume": 476}
    ]
