"""The bridge from the daemon's ``Record`` effects to the :class:`CallRecorder`.

The desk state machine emits ``Record(moment, call_id, at, data)`` with ``at`` from the
daemon's monotonic clock; the daemon hands each one to its ``recorder`` callable. This
is that callable: it adds the wall-clock reading (taken when the moment is recorded,
for dates only), the agent's name and IANA time zone, and calls the recorder method
of the same name. Plug it in as ``Daemon(..., recorder=MetricsSink(CallRecorder(),
agent=..., tz=...))``.

Retention: after a call completes, calls that rang more than ``retention_days`` ago
(default 365; None: never) are deleted, at most once a day.

Restarts: ``start_run()`` (before the new run's first ``heartbeat()``) remembers the old
run's last heartbeat and completes the calls it left in wrap-up at that moment; ``settle()``,
given the softphone's first call list, completes the open calls that are gone at that moment
too and brings the ones still live up to date. Either way the record says ``ended_by =
'restart'``: no call stays open, none is counted twice.

Analytics: ``analytics(call_id, figures)`` stores what the audio pipeline returned at hang-up;
a call it did not meter keeps NULL (docs/analytics.md).

Mapping of the desk's moments: ``unanswered`` (an outbound call the customer never
answered) is recorded as ``abandoned`` (rang, not handled); every other moment has a
recorder method of its own name. Unknown moments are logged and ignored, so a newer
desk never breaks an older store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from offhook.metrics import privacy
from offhook.metrics.moments import COMPLETING, RECORDED_AS, Moment
from offhook.metrics.store import CallRecorder, MetricsError, to_epoch, zone

log = logging.getLogger("offhook.metrics")


class RecordLike(Protocol):
    @property
    def moment(self) -> str: ...
    @property
    def call_id(self) -> str: ...
    @property
    def at(self) -> float: ...
    @property
    def data(self) -> dict[str, Any]: ...


def local_zone_name() -> str:
    """The PC's IANA zone name where it can be found (TZ, /etc/localtime), else UTC. A name that
    is not a known zone is skipped with a warning: recording calls under it would fail every one."""
    import os
    from pathlib import Path

    found = []
    name = os.environ.get("TZ", "").lstrip(":")
    if name and "/" in name:
        found.append(name)
    try:
        target = str(Path("/etc/localtime").resolve())
        if "zoneinfo/" in target:
            found.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    for candidate in found:
        try:
            zone(candidate)
        except MetricsError as exc:
            log.warning("metrics: the PC's time zone: %s; trying the next source", exc)
        else:
            return candidate
    return "UTC"


class MetricsSink:
    """Callable taking the daemon's Record effects; never raises into the daemon."""

    def __init__(
        self,
        recorder: CallRecorder,
        *,
        agent: str,
        tz: str = "",
        wall_clock: Callable[[], datetime | float] = time.time,
        retention_days: float | None = privacy.DEFAULT_RETENTION_DAYS,
    ) -> None:
        self.recorder = recorder
        self.agent = agent
        self.tz = tz or local_zone_name()
        self.wall_clock = wall_clock
        self.retention_days = retention_days
        self._purged_at: float | None = None  # monotonic reading of the last retention purge
        self._old_run_alive: tuple[float, float] | None = None  # the previous run's last heartbeat

    # ------------------------------------------------------------ restarts

    def start_run(self) -> list[str]:
        """A daemon run begins: complete the calls the last run left in wrap-up (a hung-up call
        can only have been in wrap-up), at that run's last heartbeat. Returns their Call-IDs."""
        self._old_run_alive = self.recorder.last_alive()
        return [call.call_id for call in self.recorder.open_calls() if call.hung_up and self._interrupted(call.call_id)]

    def heartbeat(self, mono: float) -> None:
        self.recorder.heartbeat(wall=self.wall_clock(), mono=mono)

    def settle(self, live: dict[str, tuple[bool, bool]], mono: float) -> list[str]:
        """The softphone's first call list after a restart, as {Call-ID: (established, held)}: open
        calls it no longer has ended while no daemon watched (completed at the old run's last
        heartbeat); live ones catch up on an answer or hold change the old run did not see (now).
        Returns the Call-IDs completed."""
        closed = []
        wall = self.wall_clock()
        for call in self.recorder.open_calls():
            if call.call_id not in live:
                if self._interrupted(call.call_id):
                    closed.append(call.call_id)
                continue
            established, held = live[call.call_id]
            if established and not call.answered:
                self.recorder.answered(call.call_id, wall=wall, mono=mono)
            if held and not call.on_hold:
                self.recorder.hold_started(call.call_id, wall=wall, mono=mono)
            elif call.on_hold and not held:
                self.recorder.hold_ended(call.call_id, wall=wall, mono=mono)
        return closed

    def _interrupted(self, call_id: str) -> bool:
        alive = self._old_run_alive
        wall, mono = alive if alive is not None else (self.wall_clock(), None)
        closed = self.recorder.close_interrupted(call_id, wall=wall, mono=mono)
        if closed:
            log.warning("metrics: call %s completed after a restart, at the old run's last heartbeat", call_id)
        return closed

    def __call__(self, record: RecordLike) -> bool:
        try:
            moment = RECORDED_AS[Moment(record.moment)]
        except ValueError:
            log.warning("metrics: unknown call moment %r ignored", record.moment)
            return False
        wall = self.wall_clock()
        try:
            if moment is Moment.RINGING:
                return self.recorder.ringing(
                    record.call_id,
                    agent=self.agent,
                    direction=str(record.data.get("direction", "inbound")),
                    number=record.data.get("peer"),
                    tz=self.tz,
                    wall=wall,
                    mono=record.at,
                )
            method: Callable[..., bool] = getattr(self.recorder, moment.value)
            recorded = method(record.call_id, wall=wall, mono=record.at)
        except MetricsError as exc:
            log.error("metrics: %s %s not recorded: %s", moment, record.call_id, exc)
            return False
        if recorded and moment in COMPLETING:
            self._apply_retention(record.at, wall)
        return recorded

    def analytics(self, call_id: str, figures: dict[str, Any]) -> bool:
        """The audio pipeline's figures for a call, as it returned them at hang-up (never raises)."""
        try:
            return self.recorder.analytics(call_id, figures)
        except MetricsError as exc:
            log.warning("metrics: analytics of %s not recorded: %s", call_id, exc)
            return False

    def _apply_retention(self, mono: float, wall: datetime | float) -> None:
        """The retention period, enforced at most once a day, after a call completed (so never mid-call)."""
        if self.retention_days is None or (self._purged_at is not None and mono - self._purged_at < 86400.0):
            return
        self._purged_at = mono
        purged = self.recorder.purge(older_than_days=self.retention_days, now=to_epoch(wall))
        if purged:
            log.info("metrics: %d calls older than %g days purged (retention)", purged, self.retention_days)
