"""The firmware's asyncio tasks on the VM, in real time: the same ``app.main`` every board runs
(the VM entry only awaits it, having no asyncio.run). A crashing task is logged over the link
and restarted; the watchdog is fed only while every task is alive."""

from __future__ import annotations

from offhook import linkproto as L
from offhook.vm import MicroPythonVM
from tests.conftest import REPO_ROOT
from tests.firmware import fw

RUN = """
import asyncio
app = vm_main.create()
task = asyncio.create_task(app.run())
await asyncio.sleep_ms(50)
machine.set_input(2, 0)
await asyncio.sleep_ms(250)
machine.set_input(2, 1)
await asyncio.sleep_ms(1300)
task.cancel()
await asyncio.sleep_ms(0)
out()
print(machine.WDT.last.timeout, machine.WDT.last.feeds, app.crashes)
"""

CRASH = """
import asyncio
app = vm_main.create()
real_draw = app.draw
crashes = [0, 0]

def flaky_draw(now):
    if crashes[0] < 2:
        crashes[0] += 1
        raise RuntimeError("lamp driver fault %d" % crashes[0])
    real_draw(now)
    crashes[1] += 1

app.draw = flaky_draw
task = asyncio.create_task(app.run())
await asyncio.sleep_ms(500)
task.cancel()
await asyncio.sleep_ms(0)
out()
print(app.crashes, app.healthy(time.ticks_ms()), crashes[1] > 5)
"""


def test_main_runs_tasks_in_real_time(mpvm: MicroPythonVM) -> None:
    fw.load(mpvm)
    hexdata, stats = mpvm.run(fw.VM_PRELUDE + RUN, is_async=True).check().splitlines()
    frames = fw.frames(hexdata)
    assert frames[0].type == L.HELLO
    (event,) = {(e[0], e[1]) for e in fw.events(frames)}
    assert event == ("hook", "short")
    timeout, feeds, crashes = (int(x) for x in stats.split())
    assert timeout == 8000 and feeds >= 1 and crashes == 0


def test_crashing_task_is_logged_and_restarted(mpvm: MicroPythonVM) -> None:
    fw.load(mpvm)
    hexdata, stats = mpvm.run(fw.VM_PRELUDE + "import time\n" + CRASH, is_async=True).check().splitlines()
    logs = [L.decode_log(f.payload) for f in fw.frames(hexdata) if f.type == L.LOG]
    errors = [text for level, text in logs if level == L.LOG_ERROR]
    assert len(errors) == 2
    assert errors[0].startswith("task leds crashed: Traceback")
    assert "RuntimeError: lamp driver fault 1" in errors[0]
    crashes, healthy, drawing = stats.split()
    assert (crashes, healthy, drawing) == ("2", "True", "True")  # the LED task came back


def test_watchdog_starves_on_stall_or_crash_loop(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm)
    code = """
import time
now = time.ticks_ms()
for i in range(3):
    app.beats[i] = now
ok = app.healthy(now)
app.beats[1] = now - 5000
stalled = app.healthy(now)
app.beats[1] = now
app._crash_window = now
app._crash_count = 5
looping = app.healthy(now)
print(ok, stalled, looping)
"""
    assert mpvm.run(code).check().split() == ["True", "False", "False"]


def test_entries_differ_only_in_how_they_start_main() -> None:
    main_py = (REPO_ROOT / "firmware" / "main.py").read_text()
    vm_main = (REPO_ROOT / "firmware" / "sim" / "vm_main.py").read_text()
    # Both run the app through health.main (slot confirmation, reset into a new slot; issue 8).
    assert "asyncio.run(health.main())" in main_py
    assert "await health.main(" in vm_main and "asyncio.run" not in vm_main.replace("minus asyncio.run", "")


def test_fatal_error_is_logged_then_reset(mpvm: MicroPythonVM) -> None:
    """An error outside the supervised tasks goes out as a LOG frame, then the board resets."""
    fw.load(mpvm)
    code = """
import asyncio
app = vm_main.create()

def broken_boot(now):
    raise OSError(5)

app.boot = broken_boot
try:
    await app.run()
except SystemExit as exc:
    print(exc)
out()
"""
    reset, hexdata = mpvm.run(fw.VM_PRELUDE + code, is_async=True).check().splitlines()
    assert reset == "machine.reset() in the simulator"
    ((level, text),) = [L.decode_log(f.payload) for f in fw.frames(hexdata) if f.type == L.LOG]
    assert level == L.LOG_ERROR and text.startswith("firmware crashed:") and "OSError: [Errno 5] EIO" in text


def test_hex_bridge(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm)
    ping = fw.host_frame(L.PING, L.encode_ping(7), 0)
    hexdata = mpvm.run(
        f"sim.LINK.host_read()\nsim.LINK.host_write_hex({ping!r})\napp.step(5)\nprint(sim.LINK.host_read_hex())"
    ).check()
    assert [f.type for f in fw.frames(hexdata)] == [L.ACK, L.PONG]
