"""`offhook sim --headless`: simulated units driven by JSON lines (for tests and scripts).

Prints one line when ready: {"event": "ready", "units": [{"serial", "path", "pty"}, ...]}
(``path`` is the stable port symlink to open with pyserial). Then reads one JSON
request per line on stdin and answers each with one JSON line ({"ok": true, ...} or
{"ok": false, "error": "..."}; an "id" in the request comes back in the reply).
Requests (``unit`` is an index, default 0):
  {"cmd": "press", "button": B, "ms": 80}      short press (B: hook, mute, hold, escalate, state, vol_up, vol_down)
  {"cmd": "hold", "button": B, "ms": 1000}     long press
  {"cmd": "double", "button": B}               double press
  {"cmd": "down" | "up", "button": B}          one edge
  {"cmd": "leds"}                              → {"leds": {"hook": duty 0..65535, ...}}
  {"cmd": "state"}                             → the last STATE the host sent since power-on (or null)
  {"cmd": "power_cycle"} | {"cmd": "unplug"} | {"cmd": "replug"}
  {"cmd": "cut_power_after", "writes": N}      flash keeps only the next N writes
  {"cmd": "units"}                             → the units list again (paths change on replug)
  {"cmd": "quit"}
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from offhook import linkproto as L
from offhook.sim.unit import SimulatedUnit


def describe(units: list[SimulatedUnit]) -> list[dict[str, Any]]:
    return [
        {"serial": u.serial, "path": str(u.port_link), "pty": u.slave_path, "plugged": u.plugged, "powered": u.powered}
        for u in units
    ]


async def handle(units: list[SimulatedUnit], request: dict[str, Any]) -> dict[str, Any]:
    cmd = request.get("cmd")
    index = request.get("unit", 0)
    if not isinstance(index, int) or not 0 <= index < len(units):
        raise ValueError(f"unit must be 0..{len(units) - 1}")
    unit = units[index]
    button = str(request.get("button", ""))
    if cmd in ("press", "hold", "double", "down", "up"):
        from offhook.sim.unit import BUTTONS

        if button not in BUTTONS:
            raise ValueError(f"button must be one of {', '.join(BUTTONS)}")
    ms = request.get("ms", 1000 if cmd == "hold" else 80)
    if not isinstance(ms, int) or not 1 <= ms <= 60_000:
        raise ValueError("ms must be a whole number of milliseconds, 1..60000")
    match cmd:
        case "press" | "hold":
            await unit.press(button, ms)
        case "double":
            await unit.double_press(button)
        case "down" | "up":
            await unit.set_key(button, cmd == "down")
        case "leds":
            return {"leds": unit.led_map()}
        case "state":
            if unit.last_state is None:
                return {"state": None}
            call, agent, flags, timer = unit.last_state
            names = [name for bit, name in L.STATE_FLAG_NAMES if flags & bit]
            return {
                "state": {"call": L.CALL_NAMES[call], "agent": L.AGENT_NAMES[agent], "flags": names, "timer_s": timer}
            }
        case "power_cycle":
            await unit.power_cycle()
        case "unplug":
            await unit.unplug()
        case "replug":
            await unit.replug()
            return {"units": describe(units)}
        case "cut_power_after":
            writes = request.get("writes")
            if not isinstance(writes, int) or writes < 0:
                raise ValueError("writes must be a whole number ≥ 0")
            await unit.cut_power_after(writes)
        case "units":
            return {"units": describe(units)}
        case _:
            raise ValueError(f"unknown cmd {cmd!r}")
    return {}


async def run(units: list[SimulatedUnit]) -> int:
    for unit in units:
        await unit.start()
    print(json.dumps({"event": "ready", "units": describe(units)}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return 0  # stdin closed: stop
        if not line.strip():
            continue
        request: dict[str, Any] = {}
        try:
            parsed = json.loads(line)
            if not isinstance(parsed, dict):
                raise ValueError("a request must be a JSON object")
            request = parsed
            if request.get("cmd") == "quit":
                print(json.dumps({"id": request.get("id"), "ok": True}), flush=True)
                return 0
            reply = {"ok": True, **(await handle(units, request))}
        except (ValueError, TypeError) as exc:
            reply = {"ok": False, "error": str(exc)}
        reply["id"] = request.get("id")
        print(json.dumps(reply), flush=True)
