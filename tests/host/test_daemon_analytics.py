"""The daemon tells the audio pipeline a call's moments and stores the figures it returns (issue 25).

A real control socket and CallMeters with a stand-in meter (no audio): what the daemon sends for each
desk moment, the figures reaching the call's record and the API, and NULL with no pipeline running.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from offhook import config
from offhook.audio.control import AudioChannel, CallMeters, ControlServer
from offhook.daemon.service import Daemon
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder
from offhook.softphone.base import EventKind, SoftphoneEvent
from offhook.softphone.web import WebSoftphone


class StandIn:
    """A meter that remembers nothing but the call's end: figures with one known value."""

    def push(self, *args: Any, **kwargs: Any) -> None:
        pass

    def finish(self) -> Any:
        class Figures:
            @staticmethod
            def as_dict() -> dict[str, Any]:
                return {"connected_s": 12.5, "agent_share": 0.5, "dead_air_s": 0.0, "quality": {}}

        return Figures()


def run_call(tmp_path: Path, pipeline: bool) -> tuple[list[tuple[str, str]], Any, list[dict[str, Any]]]:
    heard: list[tuple[str, str]] = []
    meters = CallMeters(make=StandIn)  # type: ignore[arg-type]
    real_event = meters.event

    def event(call_id: str, name: str) -> Any:
        heard.append((call_id, name))
        return real_event(call_id, name)

    meters.event = event  # type: ignore[method-assign]
    control = tmp_path / "audio.sock"
    server = ControlServer(control, lambda muted: None, meters) if pipeline else None
    recorder = CallRecorder(tmp_path / "metrics.sqlite3")
    channel = AudioChannel(tmp_path / "daemon.sock", control)
    cfg = config.validate({"timers": {"wrap_up_s": 0}})
    daemon = Daemon(
        cfg, WebSoftphone(), tmp_path / "state.json", recorder=MetricsSink(recorder, agent="ann", tz="UTC"),
        audio_channel=channel,
    )  # fmt: skip
    events: list[dict[str, Any]] = []
    daemon.listeners.append(lambda message: events.append(message) if message["event"] == "analytics" else None)

    async def call() -> None:
        running = asyncio.create_task(daemon.run())
        await asyncio.sleep(0.1)
        t = 1.0
        for kind in (EventKind.INCOMING, EventKind.ESTABLISHED, EventKind.HELD, EventKind.RESUMED, EventKind.CLOSED):
            await daemon.apply(daemon.desk.softphone_event(SoftphoneEvent(kind, "c1@pbx", "sip:1@pbx", "inbound"), t))
            t += 1.0
        for _ in range(50):
            if events or not pipeline:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    try:
        asyncio.run(call())
        (analytics,) = recorder.conn.execute("SELECT analytics FROM calls WHERE call_id = 'c1@pbx'").fetchone()
    finally:
        channel.close()
        recorder.close()
        if server is not None:
            server.close()
    return heard, analytics, events


def test_moments_go_to_the_pipeline_and_figures_to_the_record(tmp_path: Path) -> None:
    heard, analytics, events = run_call(tmp_path, pipeline=True)
    assert heard == [("c1@pbx", "connect"), ("c1@pbx", "hold"), ("c1@pbx", "resume"), ("c1@pbx", "end")]
    assert analytics is not None and '"connected_s":12.5' in analytics and '"agent_share":0.5' in analytics
    assert events == [{"event": "analytics", "call": "c1@pbx", "figures": {
        "connected_s": 12.5, "agent_share": 0.5, "dead_air_s": 0.0, "quality": {}}}]  # fmt: skip


def test_no_pipeline_running_leaves_the_analytics_null(tmp_path: Path) -> None:
    heard, analytics, events = run_call(tmp_path, pipeline=False)
    assert heard == [] and events == []
    assert analytics is None
