"""Fuzzing the link decoder and the reliable link on CPython and on the MicroPython VM.

`make test` runs a short stream per runtime; `make soak` runs 1,000,000 cases per runtime
(SOAK_FUZZ_CASES) and atheris on CPython. Nothing may escape, the stream must always recover
at the next delimiter, and memory must not grow.
"""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path

import pytest

from offhook import linkproto
from offhook.firmware import LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE
from offhook.vm import MicroPythonVM
from tests.reliability.fuzz_link import Fuzzer

FUZZER_SOURCE = Path(__file__).with_name("fuzz_link.py").read_bytes()
SOAK_CASES = int(os.environ.get("SOAK_FUZZ_CASES", "1000000"))


def cpython(cases: int) -> tuple[dict, int]:
    fuzzer = Fuzzer(linkproto, 20261123)
    fuzzer.run(2000)  # warm up: buffers and windows reach their steady size
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    stats = fuzzer.run(cases)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return stats, growth


def on_vm(vm: MicroPythonVM, cases: int, chunk: int = 5000) -> tuple[dict, int]:
    vm.put(LINKPROTO_DEVICE_PATH, LINKPROTO_SOURCE.read_bytes())
    vm.put("/fuzz_link.py", FUZZER_SOURCE)
    vm.run("import gc, json, linkproto\nfrom fuzz_link import Fuzzer\nfz = Fuzzer(linkproto, 20261123)").check()
    vm.run("fz.run(2000)").check()
    # gc.collect() only frees what earlier run() calls left behind: measure between calls.
    measure = "gc.collect()\nprint(gc.mem_alloc())"
    before = int(vm.run(measure).check())
    done = 0
    while done < cases:
        step = min(chunk, cases - done)
        vm.run(f"fz.run({step})").check()
        done += step
    after = int(vm.run(measure).check())
    stats = json.loads(vm.run("print(json.dumps(fz.stats))").check())
    return stats, after - before


def check(stats: dict, cases: int, growth: int) -> None:
    assert stats["escaped"] == []
    assert stats["not_recovered"] == 0
    assert stats["cases"] == cases + 2000
    assert stats["errors"] > 0.9 * cases  # the stream really was hostile
    assert growth < 4096, f"memory grew by {growth} bytes"


def test_fuzz_cpython_short() -> None:
    stats, growth = cpython(20_000)
    check(stats, 20_000, growth)


def test_fuzz_vm_short(mpvm: MicroPythonVM) -> None:
    stats, growth = on_vm(mpvm, 10_000)
    check(stats, 10_000, growth)


def test_same_case_stream_on_both_runtimes(mpvm: MicroPythonVM) -> None:
    vm_stats, _ = on_vm(mpvm, 3000)
    fuzzer = Fuzzer(linkproto, 20261123)
    fuzzer.run(2000)
    assert fuzzer.run(3000) == vm_stats


@pytest.mark.soak
@pytest.mark.timeout(3600)  # pytest.ini's 300 s is for make test
def test_fuzz_cpython_soak() -> None:
    stats, growth = cpython(SOAK_CASES)
    check(stats, SOAK_CASES, growth)
    print(f"CPython: {SOAK_CASES} cases, {stats['errors']} decode errors, memory growth {growth} B")


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_fuzz_vm_soak(mpvm: MicroPythonVM) -> None:
    stats, growth = on_vm(mpvm, SOAK_CASES, chunk=20000)
    check(stats, SOAK_CASES, growth)
    print(f"MicroPython VM: {SOAK_CASES} cases, {stats['errors']} decode errors, heap growth {growth} B")
