"""Call loop: a real `offhook daemon` process, the simulated unit and a real baresip pair.

Each call: the customer dials, the unit's hook button answers, mute on and off, hook hangs
up, wrap-up ends. Measured: calls handled, button release → answered at the far end (p50/p99), the
daemon's RSS and open file descriptors at the start and the end. `make test` runs a short
loop; `make soak` runs SOAK_MINUTES (30) and prints the figures. Loopback only, bounded.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import pytest

from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.base import EventKind
from tests.integration.test_daemon_process import Setup

SOAK_MINUTES = float(os.environ.get("SOAK_MINUTES", "30"))


def daemon_resources(pid: int) -> tuple[float, int]:
    rss_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmRSS:")
    )
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def call_loop(setup: Setup, *, calls: int | None = None, seconds: float | None = None) -> dict:
    customer = BaresipAdapter(port=setup.customer.ctrl_port)
    await customer.start()
    await asyncio.wait_for(customer.connected.wait(), 5)
    assert setup.daemon is not None
    latencies: list[float] = []
    resources: list[tuple[float, int]] = []
    deadline = time.monotonic() + (seconds or 0)
    handled = 0

    async def wait_state(wanted) -> None:  # type: ignore[no-untyped-def]
        await asyncio.to_thread(setup.wait, wanted)

    async def press(button: str) -> None:
        await asyncio.to_thread(setup.sim.ask, cmd="press", button=button)

    async def one_call() -> float:
        """One whole call; returns button release → answered at the far end (s)."""
        await customer.command("dial", setup.agent.uri)
        await wait_state(lambda s: s["call"] == "ringing")
        await press("hook")
        released = time.monotonic()  # a short press is reported on release (after 80 ms down)
        while (await asyncio.wait_for(customer.events.get(), 10)).kind is not EventKind.ESTABLISHED:
            pass
        answered = time.monotonic() - released
        await wait_state(lambda s: s["call"] == "active")
        await press("mute")
        await wait_state(lambda s: "muted" in s["flags"])
        await press("mute")
        await wait_state(lambda s: "muted" not in s["flags"])
        await press("hook")
        while (await asyncio.wait_for(customer.events.get(), 10)).kind is not EventKind.CLOSED:
            pass
        await wait_state(lambda s: s["call"] == "idle" and s["agent"] == "available")
        return answered

    failure = ""
    while (calls is not None and handled < calls) or (seconds is not None and time.monotonic() < deadline):
        try:
            latencies.append(await one_call())
        except (TimeoutError, AssertionError) as exc:  # stop; report what happened with the figures so far
            failure = f"call {handled + 1} failed: {exc!r}\n{setup.log.read_text()[-3000:]}"
            break
        handled += 1
        if handled in (2, 3) or handled % 25 == 0:
            resources.append(daemon_resources(setup.daemon.pid))
    resources.append(daemon_resources(setup.daemon.pid))
    await customer.stop()
    return {"handled": handled, "latencies": latencies, "resources": resources, "failure": failure}


def run_loop(tmp_path: Path, **limits: float) -> dict:
    setup = Setup(tmp_path)
    setup.config.write_text(setup.config.read_text() + "[timers]\nwrap_up_s = 0\n")
    try:
        setup.start_daemon()
        setup.wait(lambda s: s["agent"] == "available")
        return asyncio.run(call_loop(setup, **limits))  # type: ignore[arg-type]
    finally:
        setup.close()


def summary(result: dict) -> str:
    lat = sorted(result["latencies"])
    p99 = lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]
    (rss0, fd0), (rss1, fd1) = result["resources"][0], result["resources"][-1]
    return (
        f"calls handled {result['handled']}; button release → answered at the far end p50 "
        f"{statistics.median(lat) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; daemon RSS {rss0:.1f} → {rss1:.1f} MB; "
        f"open fds {fd0} → {fd1}; RSS by quarter of the run "
        + " → ".join(f"{rss:.1f}" for rss, _ in quarters(result["resources"]))
        + " MB"
    )


def quarters(samples: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """The samples at 0, 25, 50, 75 and 100 % of the run: growth that levels off is a cache filling,
    growth that keeps its pace is a leak."""
    return [samples[round(q * (len(samples) - 1) / 4)] for q in range(5)]


def test_call_loop_short(tmp_path: Path) -> None:
    result = run_loop(tmp_path, calls=8)
    assert not result["failure"], result["failure"]
    assert result["handled"] == 8
    (_, fds_early), (_, fds_end) = result["resources"][0], result["resources"][-1]
    assert fds_end <= fds_early  # no descriptor leaks per call
    print(summary(result))


@pytest.mark.soak
@pytest.mark.timeout(int(SOAK_MINUTES * 60) + 600)  # pytest.ini's 300 s is for make test
def test_call_loop_soak(tmp_path: Path) -> None:
    result = run_loop(tmp_path, seconds=SOAK_MINUTES * 60)
    print(summary(result))
    assert not result["failure"], result["failure"]
    (rss_early, fds_early), (rss_end, fds_end) = result["resources"][0], result["resources"][-1]
    assert fds_end <= fds_early
    assert rss_end < rss_early * 1.10 + 2  # no growth beyond allocator noise
