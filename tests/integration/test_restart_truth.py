"""A daemon restart with real baresip: the unit claims nothing before baresip's call list is in,
a never-muted call comes back un-muted (not "unconfirmed"), and a wrap-up cut by the restart
completes its call's record at the old run's last heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from offhook import linkproto as L
from offhook.daemon.service import Daemon
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder
from offhook.softphone.baresip import BaresipAdapter
from offhook.softphone.baresip_process import BaresipInstance
from tests.integration.test_daemon_baresip import Rig, finish, phones, started

__all__ = ["phones"]  # the fixture, shared with the daemon's other baresip tests


async def stop(task: asyncio.Task[Any]) -> None:
    """The daemon dies: nothing of its own shutdown may matter (a kill -9 runs none of it)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_a_restarted_daemon_claims_nothing_until_baresip_lists_its_calls(
    phones: dict[str, BaresipInstance], tmp_path: Path
) -> None:
    async def scenario() -> None:
        rig = Rig(phones, tmp_path)
        task = await started(rig)
        await rig.answer_call()
        await stop(task)
        shown_before = len(rig.unit.states())
        agent_phone = phones["agent"].process
        assert agent_phone is not None
        os.kill(agent_phone.pid, signal.SIGSTOP)  # baresip is slow to answer its call list
        try:
            again = Daemon(rig.daemon.config, BaresipAdapter(port=phones["agent"].ctrl_port), tmp_path / "state.json")
            task = asyncio.create_task(again.run())
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                await asyncio.to_thread(rig.unit.pump, 0.05)
            assert rig.unit.states()[shown_before:] == []  # no "idle, available" while the customer is on
        finally:
            os.kill(agent_phone.pid, signal.SIGCONT)
        state = await rig.wait_state(lambda s: s[0] == L.CALL_ACTIVE, timeout=10)
        assert rig.unit.states()[shown_before] == state  # the first STATE it sent is the truth
        assert state[1] == L.AGENT_ON_CALL
        # Established while the old daemon watched and never toggled: un-muted, and confirmed.
        assert not state[2] & (L.STATE_MUTED | L.STATE_MUTE_UNCONFIRMED)
        rig.daemon = again
        await finish(rig, task)

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_a_wrap_up_cut_by_a_restart_completes_its_call_once(phones: dict[str, BaresipInstance], tmp_path: Path) -> None:
    store = tmp_path / "metrics.sqlite3"

    def sink() -> MetricsSink:
        return MetricsSink(CallRecorder(store), agent="ann", tz="UTC", retention_days=None)

    async def scenario() -> None:
        rig = Rig(phones, tmp_path, wrap_up_s=60)
        rig.daemon.recorder = sink()
        task = await started(rig)
        await rig.answer_call()
        await rig.customer.command("hangup")
        await rig.wait_state(lambda s: s[1] == L.AGENT_WRAP_UP, timeout=5)
        await asyncio.sleep(1.0)
        killed_at = time.time()
        await stop(task)

        again = Daemon(
            rig.daemon.config,
            BaresipAdapter(port=phones["agent"].ctrl_port),
            tmp_path / "state.json",
            recorder=sink(),
        )
        task = asyncio.create_task(again.run())
        # The agent's after-call work goes on for what is left of it (not "available" at once).
        state = await rig.wait_state(lambda s: s[1] == L.AGENT_WRAP_UP and s[3] > 0, timeout=10)
        assert 45 <= state[3] <= 60
        rig.daemon = again
        await finish(rig, task)
        with CallRecorder(store) as recorder:
            rows = recorder.conn.execute("SELECT * FROM calls").fetchall()
        assert len(rows) == 1
        call = rows[0]
        assert (call["completed"], call["ended_by"], call["outcome"]) == (1, "restart", "answered")
        assert call["wrap_wall"] <= killed_at  # ended at the old run's last heartbeat
        assert 0 <= call["wrap_s"] <= killed_at - call["end_wall"]
        assert abs(call["talk_s"] + call["hold_s"] + call["wrap_s"] - (call["wrap_mono"] - call["answer_mono"])) < 1e-6

    asyncio.run(asyncio.wait_for(scenario(), 90))
