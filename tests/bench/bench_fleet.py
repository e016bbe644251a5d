"""Fleet: flashing simulated units over the throttled link (1 unit, then 20 in parallel on this
machine's cores), achieved bytes/s against the link rate, and the unit-side signature check
on the MicroPython VM (operations, VM time, expected RP2040 time)."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from offhook.fleet import build, flasher
from offhook.sim.unit import LINK_BYTES_PER_S
from tests.bench.figures import Figure
from tests.fleet import keyring, simfleet

PARALLEL = 20
VERIFY_RUNS = 20


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _flash(workdir: Path, count: int, data: bytes) -> tuple[float, float, list[flasher.FlashResult]]:
    """Wall time, this process's CPU time (host flasher + the simulator's relay), results."""
    async with simfleet.units(workdir, count) as fleet:
        paths = [str(unit.port_link) for unit in fleet]
        start, cpu = time.monotonic(), _cpu()
        results = await flasher.flash_all(paths, data, build.peek_manifest(data), parallel=count, retries=1)
        return time.monotonic() - start, _cpu() - cpu, results


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _idle_unit_cpu(workdir: Path) -> float:
    """CPU share of one simulated unit doing nothing (its VM's polling and asyncio tasks)."""
    async with simfleet.units(workdir, 1) as (unit,):
        await asyncio.sleep(1)
        assert unit._process is not None
        pid = unit._process.pid
        cpu, start = _proc_cpu(pid), time.monotonic()
        await asyncio.sleep(3)
        return (_proc_cpu(pid) - cpu) / (time.monotonic() - start)


def _verify_on_vm() -> float:
    """Mean ms of bundle.verify (one pow(s, 65537, n) with a 3072-bit n, plus SHA-256) on the VM."""
    from offhook.firmware import LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE, SHARED
    from offhook.vm import MicroPythonVM

    manifest = build.peek_manifest(simfleet.sim_bundle())
    raw = build.B.manifest_bytes(manifest)
    sig = build.keys.sign(keyring.key(0), raw)
    with MicroPythonVM() as vm:
        vm.put(LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE.read_bytes())
        vm.put("/lib/bundle.py", SHARED["/lib/bundle.py"].read_bytes())
        vm.put("/m.bin", raw)
        vm.put("/s.bin", sig)
        code = (
            "import bundle, time\n"
            f"n = bundle.key_modulus({keyring.n_hex(0)!r})\n"
            "m = open('/m.bin', 'rb').read(); s = open('/s.bin', 'rb').read()\n"
            "t = time.ticks_us()\n"
            f"ok = all(bundle.verify(m, s, n) for _ in range({VERIFY_RUNS}))\n"
            f"print(ok, time.ticks_diff(time.ticks_us(), t) / {VERIFY_RUNS} / 1000)"
        )
        ok, ms = vm.run(code).check().split()
    assert ok == "True"
    return float(ms)


def _heap_on_vm() -> tuple[int, int]:
    """Bytes in use after a real boot (boot.py, the app, health; .mpy) and what an update adds."""
    import json as _json

    from offhook.firmware import vm_files
    from offhook.vm import MicroPythonVM
    from tests.firmware import fw

    with tempfile.TemporaryDirectory() as tmp, MicroPythonVM() as vm:
        vm.put_files(fw.compiled_files(vm_files(), Path(tmp)))
        vm.put("/keys.json", _json.dumps({"n": keyring.n_hex(0)}))
        empty = int(vm.run("import gc, sys\nsys.path.insert(0, '/lib')\ngc.collect()\nprint(gc.mem_alloc())").check())
        vm.run("import boot, vm_main\nfrom offhook_fw import health\napp = vm_main.create()\napp.boot(0)").check()
        booted = int(vm.run("gc.collect()\nprint(gc.mem_alloc())").check())
        vm.run("import updater\nu = updater.Updater('sim', '0.1.0')").check()
        updating = int(vm.run("gc.collect()\nprint(gc.mem_alloc())").check())
    return booted - empty, updating - booted


def run() -> list[Figure]:
    data = simfleet.sim_bundle()
    with tempfile.TemporaryDirectory() as tmp:
        one_s, _one_cpu, (one,) = asyncio.run(_flash(Path(tmp) / "one", 1, data))
    with tempfile.TemporaryDirectory() as tmp:
        many_s, many_cpu, many = asyncio.run(_flash(Path(tmp) / "many", PARALLEL, data))
    cores = os.cpu_count() or 1
    slowest_transfer = max(r.transfer_s for r in many)
    ok = sum(r.result == "ok" for r in many)
    rate_one = len(data) / one.transfer_s
    rates = sorted(len(data) / r.transfer_s for r in many if r.transfer_s)
    ratio = many_s / one_s
    with tempfile.TemporaryDirectory() as tmp:
        idle = asyncio.run(_idle_unit_cpu(Path(tmp)))
    verify_ms = _verify_on_vm()
    heap, update_heap = _heap_on_vm()
    link = f"link {LINK_BYTES_PER_S / 1024:.0f} KiB/s each way"
    return [
        Figure(
            "fleet",
            "heap after boot via boot.py (.mpy; no USBDevice in the VM, so HID inactive)",
            heap / 1024,
            "KiB",
            "boot loader state + health task on top of the app",
            "<= 48 KB",
            heap <= 48 * 1024,
        ),
        Figure("fleet", "heap added while an update runs", update_heap / 1024, "KiB", "updater + bundle, lazily"),
        Figure("fleet", "bundle size (sim board, .mpy)", len(data) / 1024, "KiB"),
        Figure("fleet", "flash 1 unit (to confirmed)", one_s, "s", f"transfer {one.transfer_s:.2f} s; {link}"),
        Figure(
            "fleet",
            f"flash {PARALLEL} units in parallel (to confirmed)",
            many_s,
            "s",
            f"{ok}/{PARALLEL} ok; {os.cpu_count()} cores",
        ),
        Figure(
            "fleet",
            f"{PARALLEL} units / 1 unit time",
            ratio,
            "x",
            f"{many_s:.1f} s / {one_s:.1f} s",
            "<= 1.3",
            ratio <= 1.3,
        ),
        Figure(
            "fleet",
            f"{PARALLEL} units / 1 unit, transfer only (slowest)",
            slowest_transfer / one.transfer_s,
            "x",
            f"{slowest_transfer:.2f} s / {one.transfer_s:.2f} s",
        ),
        Figure(
            "fleet",
            f"host-process CPU while flashing {PARALLEL}",
            100 * many_cpu / (many_s * cores),
            "% of all cores",
            f"{many_cpu:.1f} CPU-s in {many_s:.1f} s on {cores} cores (flasher + sim relay); the rest: the VMs",
        ),
        Figure(
            "fleet",
            "one idle simulated unit (VM) CPU",
            100 * idle,
            "% of a core",
            f"{PARALLEL} idle units = {PARALLEL * idle:.1f} of {cores} cores before any flashing",
        ),
        Figure("fleet", "transfer rate, 1 unit", rate_one / 1024, "KiB/s", link, "", None),
        Figure(
            "fleet",
            f"transfer rate per unit, {PARALLEL} in parallel (median)",
            rates[len(rates) // 2] / 1024,
            "KiB/s",
            f"min {rates[0] / 1024:.0f}; {link}; {sum(r.retransmissions for r in many)} frames retransmitted",
        ),
        Figure(
            "fleet",
            "signature check on the VM (3072-bit, e=65537)",
            verify_ms,
            "ms",
            "1 modexp = 16 squarings + 1 multiply mod n (17 x 3072-bit mulmods) + SHA-256 of the manifest",
        ),
    ]
