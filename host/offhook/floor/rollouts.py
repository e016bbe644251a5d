"""Staged firmware rollouts: the stage planner (sans-IO).

A rollout sends one signed bundle to the desks its target names (``team=…``, ``site=…``,
``board=…``, ``version<…``), in stages: a canary (N units or N %), then waves of N % of the
desks targeted, with a soak time after each stage has ended before the next starts. It halts by
itself when the failures and rollbacks of a stage pass ``max_failed_percent`` of that stage. IT
may pause, resume and abort it. A team pinned to a version is skipped (and the rollout says so).
An optional maintenance window (local minutes from, to; it may span midnight) holds each desk's
update until its own local time is inside it. A desk that was offline catches up when it comes
back, unless the rollout was aborted.

``Rollout.tick(desks, phases, now)`` takes the floor as central sees it (each desk's presence,
board, firmware, team, time zone) and each desk's last reported update phase, and returns the
actions to carry out: ``Dispatch`` (send the update to a desk), ``Prefetch`` (have a desk of the
next stage download the bundle during the soak, so that its stage starts with the bundle on hand),
``Cancel`` (drop a queued one); its own fields (status, stage, members) change with it and are what
central stores.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from offhook.bundle import BundleError, parse_version

__all__ = [
    "Cancel",
    "Desk",
    "Dispatch",
    "Prefetch",
    "Rollout",
    "RolloutError",
    "Spec",
    "Target",
    "parse_target",
    "parse_window",
]

ENDED = ("confirmed", "up to date", "failed", "rolled back")
BAD = ("failed", "rolled back")
STATUSES = ("running", "paused", "halted", "aborted", "complete")
_TARGET = re.compile(r"^(team|site|board)=([A-Za-z0-9_.-]{1,64})$|^version<(\d+\.\d+\.\d+)$")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


class RolloutError(ValueError):
    """A rollout that cannot be made or a change it refuses; str() is the one-line reason."""


@dataclass(frozen=True)
class Target:
    """Which desks: every condition must hold (``version<`` compares the desk's firmware)."""

    team: str = ""
    site: str = ""
    board: str = ""
    below: str = ""

    def matches(self, desk: Desk) -> bool:
        if (self.team and desk.team != self.team) or (self.site and desk.site != self.site):
            return False
        if self.board and desk.board != self.board:
            return False
        return not self.below or _version(desk.fw) < _version(self.below)


def parse_target(items: list[str]) -> Target:
    """``["team=sales", "version<1.2.0"]`` → Target; RolloutError naming the bad item."""
    fields: dict[str, str] = {}
    for item in items:
        match = _TARGET.match(item)
        if match is None:
            raise RolloutError(f"target {item!r} is not team=NAME, site=NAME, board=NAME or version<X.Y.Z")
        key, value = ("below", match[3]) if match[3] else (match[1], match[2])
        if key in fields:
            raise RolloutError(f"target names {key if key != 'below' else 'version<'} twice")
        fields[key] = value
    return Target(**fields)


def parse_window(text: str) -> tuple[int, int]:
    """``"22:00-05:30"`` → local minutes (1320, 330); RolloutError otherwise."""
    match = _WINDOW.match(text)
    if match is None:
        raise RolloutError(f"window {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
        raise RolloutError(f"window {text!r} is not two different times of day")
    return h1 * 60 + m1, h2 * 60 + m2


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(parse_version(text))
    except BundleError:
        return (0, 0, 0)


@dataclass(frozen=True)
class Desk:
    """A desk as central sees it (presence and inventory)."""

    id: str  # "site/desk"
    site: str = ""
    team: str = ""
    board: str = ""
    fw: str = ""
    tz: str = "UTC"
    online: bool = True


@dataclass(frozen=True)
class Spec:
    """What IT asked for; fixed once the rollout is created."""

    name: str
    version: str
    board: str
    sha256: str
    target: Target = Target()
    canary: int = 1
    canary_percent: bool = False  # canary is a percentage of the desks targeted
    wave_percent: int = 25
    soak_s: float = 3600.0
    max_failed_percent: float = 10.0  # a stage's failures and rollbacks above this: halt
    window: tuple[int, int] | None = None  # local minutes, from-to
    pins: dict[str, str] = field(default_factory=dict)  # team → the version it stays on

    def __post_init__(self) -> None:
        if self.canary < 1 or (self.canary_percent and self.canary > 100):
            raise RolloutError("canary must be at least 1 unit, or 1 to 100 %")
        if not 1 <= self.wave_percent <= 100:
            raise RolloutError("waves must be 1 to 100 % of the desks")
        if self.soak_s < 0 or not math.isfinite(self.soak_s):
            raise RolloutError("soak must be 0 s or more")
        if not 0 <= self.max_failed_percent <= 100:
            raise RolloutError("the halt threshold must be 0 to 100 %")


@dataclass(frozen=True)
class Dispatch:
    desk: str


@dataclass(frozen=True)
class Prefetch:
    desk: str


@dataclass(frozen=True)
class Cancel:
    desk: str


Action = Dispatch | Prefetch | Cancel


def in_window(window: tuple[int, int] | None, tz: str, now: float) -> bool:
    """Whether ``now`` is inside the window in the desk's local time (an unknown zone: UTC)."""
    if window is None:
        return True
    try:
        zone: Any = ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    local = datetime.fromtimestamp(now, zone)
    minute, (start, end) = local.hour * 60 + local.minute, window
    return start <= minute < end if start < end else minute >= start or minute < end


@dataclass
class Rollout:
    """One rollout's progress. ``stages`` lists each started stage's members; ``dispatched``
    the desks the update went to; ``skipped`` the desks left out and why."""

    spec: Spec
    status: str = "running"
    reason: str = ""  # why it halted
    stages: list[list[str]] = field(default_factory=list)
    stage_ended: float | None = None  # when the current stage's last member ended (the soak starts)
    dispatched: set[str] = field(default_factory=set)
    prefetched: set[str] = field(default_factory=set)  # desks told to fetch the bundle ahead of their stage
    skipped: dict[str, str] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)  # desks told to drop the queued update (abort)
    excused: int = 0  # the stage (1-based) whose failures IT accepted by resuming
    total: int = 0  # desks targeted when the first stage started: wave sizes are percentages of it

    # ------------------------------------------------ IT's controls

    def pause(self) -> None:
        self._control("running", "paused")

    def resume(self) -> None:
        """Resume a paused rollout, or one that halted (IT has looked at its failures)."""
        if self.status not in ("paused", "halted"):
            raise RolloutError(f"rollout {self.spec.name} is {self.status}: only a paused or halted one resumes")
        if self.status == "halted":
            self.excused = len(self.stages)  # IT accepted this stage's failures: it may end and the next start
        self.status, self.reason = "running", ""

    def abort(self) -> None:
        if self.status == "aborted":
            raise RolloutError(f"rollout {self.spec.name} is already aborted")
        self.status = "aborted"

    def _control(self, was: str, becomes: str) -> None:
        if self.status != was:
            raise RolloutError(f"rollout {self.spec.name} is {self.status}, not {was}")
        self.status = becomes

    # ------------------------------------------------ the planner

    def eligible(self, desks: list[Desk]) -> list[Desk]:
        """The desks this rollout updates (target and board match, team not pinned); pinned ones
        are noted in ``skipped``."""
        out = []
        for desk in desks:
            if not (desk.board == self.spec.board and self.spec.target.matches(desk)):
                continue
            pin = self.spec.pins.get(desk.team)
            if pin is not None and pin != self.spec.version:
                self.skipped[desk.id] = f"team {desk.team} is pinned to {pin}"
                continue
            out.append(desk)
        return out

    def stage_size(self, index: int) -> int:
        if index == 0:
            size = math.ceil(self.total * self.spec.canary / 100) if self.spec.canary_percent else self.spec.canary
        else:
            size = math.ceil(self.total * self.spec.wave_percent / 100)
        return max(1, size)

    def tick(self, desks: list[Desk], phases: dict[str, str], now: float) -> list[Action]:
        """The actions due now; ``phases`` holds each desk's last reported update phase."""
        if self.status == "aborted":  # updates queued on desks are dropped; one under way ends by itself
            told = self.dispatched | self.prefetched
            drop = sorted(d for d in told - self.cancelled if phases.get(d, "queued") == "queued")
            self.cancelled.update(drop)
            return [Cancel(d) for d in drop]
        targeted = self.eligible(desks)
        behind = [desk for desk in sorted(targeted, key=lambda d: d.id) if _version(desk.fw) < self._want]
        self.total = self.total or len(behind)
        if self.status in ("paused", "halted"):
            return []
        by_id = {desk.id: desk for desk in targeted}
        actions: list[Action] = []
        if self.stages:
            members = self.stages[-1]
            # a member that went away (offline, no longer targeted) before its update is left for later
            members[:] = [d for d in members if d in self.dispatched or (d in by_id and by_id[d].online)]
            bad = sum(1 for d in members if phases.get(d) in BAD)
            if len(self.stages) != self.excused and bad * 100 > self.spec.max_failed_percent * len(members):
                self.status = "halted"
                self.reason = f"stage {len(self.stages)}: {bad} of {len(members)} failed or rolled back"
                return []
            actions += self._send([by_id[d] for d in members if d in by_id], now)  # its window may open now
            if self.status == "running":
                if not all(d in self.dispatched and phases.get(d) in ENDED for d in members):
                    return actions
                if self.stage_ended is None:
                    self.stage_ended = now
                    if self.spec.soak_s > 0:
                        actions += self._prefetch(behind)
                if now - self.stage_ended < self.spec.soak_s:
                    return actions
        pending = self._pending(behind)
        if self.status == "complete":  # catch-up: a desk back online after the last stage
            return actions + self._send(pending, now)
        members = [desk.id for desk in self._next_stage(pending)]
        if not members:
            if self.stages:
                self.status = "complete"  # the desks still offline catch up when they are back
            return actions
        self.stages.append(members)
        self.stage_ended = None
        return actions + self._send([by_id[d] for d in members], now)

    @property
    def _want(self) -> tuple[int, ...]:
        return _version(self.spec.version)

    def _pending(self, behind: list[Desk]) -> list[Desk]:
        """The desks behind that no stage has taken yet."""
        staged = {d for stage in self.stages for d in stage}
        return [desk for desk in behind if desk.id not in self.dispatched and desk.id not in staged]

    def _next_stage(self, pending: list[Desk]) -> list[Desk]:
        """The desks the next stage takes if it started now: the first online ones, as many as it holds."""
        return [desk for desk in pending if desk.online][: self.stage_size(len(self.stages))]

    def _prefetch(self, behind: list[Desk]) -> list[Action]:
        """The bundle to the desks that will most likely make the next stage (those it would take
        now), while this stage soaks."""
        ahead = [desk.id for desk in self._next_stage(self._pending(behind)) if desk.id not in self.prefetched]
        self.prefetched.update(ahead)
        return [Prefetch(d) for d in ahead]

    def _send(self, desks: list[Desk], now: float) -> list[Action]:
        out: list[Action] = []
        for desk in desks:
            if desk.id not in self.dispatched and desk.online and in_window(self.spec.window, desk.tz, now):
                self.dispatched.add(desk.id)
                out.append(Dispatch(desk.id))
        return out

    # ------------------------------------------------ storage

    def as_json(self) -> dict[str, Any]:
        spec = asdict(self.spec)
        return {
            "spec": spec,
            "status": self.status,
            "reason": self.reason,
            "stages": self.stages,
            "stage_ended": self.stage_ended,
            "dispatched": sorted(self.dispatched),
            "prefetched": sorted(self.prefetched),
            "skipped": self.skipped,
            "cancelled": sorted(self.cancelled),
            "excused": self.excused,
            "total": self.total,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rollout:
        spec = dict(data["spec"])
        spec["target"] = Target(**spec["target"])
        spec["window"] = tuple(spec["window"]) if spec.get("window") else None
        return cls(
            Spec(**spec),
            status=data["status"],
            reason=data["reason"],
            stages=[list(stage) for stage in data["stages"]],
            stage_ended=data["stage_ended"],
            dispatched=set(data["dispatched"]),
            prefetched=set(data.get("prefetched", [])),
            skipped=dict(data["skipped"]),
            cancelled=set(data.get("cancelled", [])),
            excused=data.get("excused", 0),
            total=data["total"],
        )


# ---------------------------------------------------------------- storage in PostgreSQL (pgstore migration 5)


def accept_bundle(data: bytes, n: int | None) -> dict[str, Any]:
    """The manifest of a bundle central may hand out: signed by the fleet's key (modulus ``n``),
    for a known board, every file whole; RolloutError with the reason otherwise."""
    from offhook.daemon.updates import UpdateRefused, check_bundle
    from offhook.fleet.build import peek_manifest

    try:
        board = str(peek_manifest(data)["board"])
        return check_bundle(data, n, board, "0.0.0")
    except (BundleError, UpdateRefused) as exc:
        raise RolloutError(f"bundle refused: {exc}") from None


def create(conn: Any, spec: Spec, data: bytes) -> Rollout:
    """Store the bundle (by its sha256) and a new rollout of it, in one transaction."""
    rollout = Rollout(spec)
    with conn.transaction():
        if conn.execute("SELECT 1 FROM rollouts WHERE name = %s", (spec.name,)).fetchone():
            raise RolloutError(f"a rollout named {spec.name!r} exists")
        conn.execute(
            "INSERT INTO bundles (sha256, version, board, data) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (spec.sha256, spec.version, spec.board, data),
        )
        conn.execute(
            "INSERT INTO rollouts (name, sha256, state) VALUES (%s, %s, %s)",
            (spec.name, spec.sha256, _jsonb(rollout.as_json())),
        )
    return rollout


def control(conn: Any, name: str, action: str) -> Rollout:
    """pause, resume or abort the rollout ``name`` (row-locked: central's tick waits for it)."""
    with conn.transaction():
        row = conn.execute("SELECT state FROM rollouts WHERE name = %s FOR UPDATE", (name,)).fetchone()
        if row is None:
            raise RolloutError(f"no rollout named {name!r}")
        rollout = Rollout.from_json(row[0])
        getattr(rollout, action)()
        conn.execute(
            "UPDATE rollouts SET state = %s, updated_at = now() WHERE name = %s", (_jsonb(rollout.as_json()), name)
        )
    return rollout


def pin(conn: Any, team: str, version: str | None) -> None:
    """Pin ``team`` to ``version`` (None: unpin): rollouts of another version skip its desks."""
    from offhook.floor.schema import NAME

    if not NAME.match(team):
        raise RolloutError(f"team {team!r} is not a name (letters, digits, _ . -)")
    if version is None:
        conn.execute("DELETE FROM team_pins WHERE team = %s", (team,))
        return
    try:
        parse_version(version)
    except BundleError as exc:
        raise RolloutError(str(exc)) from None
    conn.execute(
        "INSERT INTO team_pins (team, version) VALUES (%s, %s)"
        " ON CONFLICT (team) DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
        (team, version),
    )


def pins(conn: Any) -> dict[str, str]:
    return {team: version for team, version in conn.execute("SELECT team, version FROM team_pins").fetchall()}


ROLLOUTS_SQL = "SELECT name, state, created_at FROM rollouts ORDER BY created_at DESC, name"
UNITS_SQL = "SELECT rollout, desk, phase, percent, reason FROM rollout_units ORDER BY rollout, desk"


def status(conn: Any) -> list[dict[str, Any]]:
    """Every rollout with its progress and each desk's phase, newest first."""
    return views(conn.execute(ROLLOUTS_SQL).fetchall(), conn.execute(UNITS_SQL).fetchall())


def views(rollouts: list[tuple[Any, ...]], units: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The rows of ROLLOUTS_SQL and UNITS_SQL as each rollout's progress (the CLI's status and central's
    IT page). A unit's ``stage`` is the stage it was sent in (1-based; 0: a catch-up after the last);
    a stage member not sent yet (offline, or outside its maintenance window) shows as ``waiting``."""
    reported: dict[str, dict[str, dict[str, Any]]] = {}
    for rollout_name, desk, phase, percent, reason in units:
        reported.setdefault(rollout_name, {})[desk] = {"phase": phase, "percent": percent, "reason": reason}
    out = []
    for name, state, created in rollouts:
        rollout = Rollout.from_json(state)
        stage_of = {desk: index for index, stage in enumerate(rollout.stages, 1) for desk in stage}
        mine = reported.get(name, {})
        for desk in rollout.dispatched:
            mine.setdefault(desk, {"phase": "sent", "percent": 0, "reason": ""})
        if rollout.status not in ("aborted", "complete"):
            for desk in stage_of:
                mine.setdefault(desk, {"phase": "waiting", "percent": 0, "reason": ""})
        unit_views = {desk: {**mine[desk], "stage": stage_of.get(desk, 0)} for desk in sorted(mine)}
        done = sum(1 for unit in unit_views.values() if unit["phase"] in ("confirmed", "up to date"))
        spec = rollout.spec
        out.append(
            {
                "name": name,
                "version": spec.version,
                "board": spec.board,
                "sha256": spec.sha256,
                "status": rollout.status,
                "reason": rollout.reason,
                "stage": len(rollout.stages),
                "targeted": rollout.total,
                "done": done,
                "failed": sum(1 for unit in unit_views.values() if unit["phase"] in BAD),
                "units": unit_views,
                "skipped": rollout.skipped,
                "created": created.isoformat(),
            }
        )
    return out


def _jsonb(value: dict[str, Any]) -> Any:
    from psycopg.types.json import Jsonb

    return Jsonb(value)


# ---------------------------------------------------------------- central's side: the runner

UPDATE, UPDATE_STATUS = "update", "update_status"  # central → desk (retained), desk → central (retained)
POLL_S = 0.5
DESKS_SQL = """
SELECT d.site, d.desk, d.team, d.online AND coalesce(i.connected, false), coalesce(i.board, ''),
    coalesce(i.firmware, '') FROM desks d LEFT JOIN inventory i ON i.site = d.site AND i.desk = d.desk
"""


def update_message(rollout: Rollout, action: Action) -> tuple[str, dict[str, Any]]:
    """The retained ``update`` body for a desk: the bundle to fetch (named by its sha256), with
    ``prefetch`` when only the download is due yet (the update itself follows at its stage), or a
    cancel."""
    site, desk = action.desk.split("/", 1)
    spec = rollout.spec
    if isinstance(action, Cancel):
        return f"{site}/{desk}", {"rollout": spec.name, "cancel": True}
    body: dict[str, Any] = {"rollout": spec.name, "sha256": spec.sha256, "version": spec.version, "board": spec.board}
    if isinstance(action, Prefetch):
        body["prefetch"] = True
    return f"{site}/{desk}", {**body, "url": f"/bundles/{spec.sha256}"}


def check_status(body: dict[str, Any]) -> dict[str, Any]:
    """A desk's ``update_status`` body, checked; RolloutError otherwise."""
    from offhook.daemon.updates import ENDS

    phases = (*ENDS, "queued", "downloading", "verified", "receiving", "rebooting")
    rollout, phase, percent = body.get("rollout"), body.get("phase"), body.get("percent", 0)
    if not isinstance(rollout, str) or not 0 < len(rollout) <= 128 or phase not in phases:
        raise RolloutError("malformed update_status message")
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise RolloutError("malformed update_status message (percent)")
    reason, tz = body.get("reason", ""), body.get("tz", "")
    if not isinstance(reason, str) or not isinstance(tz, str) or len(tz) > 64:
        raise RolloutError("malformed update_status message (reason, tz)")
    return {"rollout": rollout, "phase": phase, "percent": percent, "reason": reason[:300], "tz": tz}


class RolloutService:
    """Runs in `offhook central run` beside ingest: every ``poll_s`` it keeps the desks' reported
    phases, ticks each live rollout under a row lock (several centrals never tick one twice) and
    publishes the resulting ``update`` messages (retained: a desk offline now gets its update, or
    the cancel, when it is back). ``publish(topic, body)`` is central's publisher."""

    def __init__(self, dsn: str, publish: Any, poll_s: float = POLL_S, clock: Any = None) -> None:
        import asyncio
        import time

        self.dsn = dsn
        self.publish = publish
        self.poll_s = poll_s
        self.clock = clock or time.time
        self.reports: dict[tuple[str, str], dict[str, Any]] = {}  # (site/desk, rollout): checked body
        self.tz: dict[str, str] = {}  # each desk's time zone, as its reports say
        self.closed = False
        self.woken = asyncio.Event()  # a desk's update ended: its stage may have ended with it
        self.due: float | None = None  # the soonest a soak ends (clock time), as of the last round

    def wait_s(self) -> float:
        """How long ``run`` sleeps before its next round: ``poll_s``, or less when a soak ends sooner."""
        if self.due is None:
            return self.poll_s
        return min(self.poll_s, max(0.0, self.due - self.clock()))

    def report(self, site: str, desk: str, body: dict[str, Any]) -> None:
        """A desk's update_status; a malformed one is dropped with one line."""
        import logging

        try:
            checked = check_status(body)
        except RolloutError as exc:
            logging.getLogger("offhook.central").warning("central: refused a message from %s/%s: %s", site, desk, exc)
            return
        self.reports[(f"{site}/{desk}", checked["rollout"])] = checked
        if checked["phase"] in ENDED:
            self.woken.set()
        if checked["tz"]:
            self.tz[f"{site}/{desk}"] = checked["tz"]

    async def run(self) -> None:
        import asyncio
        import contextlib

        import psycopg

        from offhook.floor import pgstore

        conn = None
        while not self.closed:
            try:
                if conn is None:
                    conn = await pgstore.connect(self.dsn)
                    await conn.set_autocommit(True)
                await self.round(conn)
            except psycopg.Error:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                conn = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.woken.wait(), self.wait_s())

    async def round(self, conn: Any) -> None:
        self.woken.clear()
        self.due = None
        reports, self.reports = self.reports, {}
        try:
            for (desk, rollout), body in sorted(reports.items()):
                await conn.execute(
                    "INSERT INTO rollout_units (rollout, desk, phase, percent, reason) SELECT %s, %s, %s, %s, %s"
                    " WHERE EXISTS (SELECT 1 FROM rollouts WHERE name = %s)"
                    " ON CONFLICT (rollout, desk) DO UPDATE SET phase = EXCLUDED.phase, percent = EXCLUDED.percent,"
                    " reason = EXCLUDED.reason, updated_at = now()",
                    (rollout, desk, body["phase"], body["percent"], body["reason"], rollout),
                )
        except Exception:
            self.reports = {**reports, **self.reports}
            raise
        floor = [
            Desk(f"{site}/{desk}", site, team, board, fw, self.tz.get(f"{site}/{desk}", "UTC"), bool(online))
            for site, desk, team, online, board, fw in await (await conn.execute(DESKS_SQL)).fetchall()
        ]
        pins = await (await conn.execute("SELECT team, version FROM team_pins")).fetchall()
        pinned = {team: version for team, version in pins}
        names = [
            row[0] for row in await (await conn.execute("SELECT name FROM rollouts ORDER BY created_at")).fetchall()
        ]
        for name in names:
            await self._tick(conn, name, floor, pinned)

    async def _tick(self, conn: Any, name: str, floor: list[Desk], pinned: dict[str, str]) -> None:
        import dataclasses

        async with conn.transaction():
            row = await (
                await conn.execute("SELECT state FROM rollouts WHERE name = %s FOR UPDATE SKIP LOCKED", (name,))
            ).fetchone()
            if row is None:
                return  # another central has it this round
            rollout = Rollout.from_json(row[0])
            if rollout.status in ("halted", "paused"):
                return
            rollout.spec = dataclasses.replace(rollout.spec, pins=pinned)
            phases = {
                desk: phase
                for desk, phase in await (
                    await conn.execute("SELECT desk, phase FROM rollout_units WHERE rollout = %s", (name,))
                ).fetchall()
            }
            before = rollout.as_json()
            actions = rollout.tick(floor, phases, self.clock())
            if rollout.status == "running" and rollout.stage_ended is not None:
                due = rollout.stage_ended + rollout.spec.soak_s
                self.due = due if self.due is None else min(self.due, due)
            if rollout.as_json() != before:
                await conn.execute(
                    "UPDATE rollouts SET state = %s, updated_at = now() WHERE name = %s",
                    (_jsonb(rollout.as_json()), name),
                )
        for action in actions:  # after the commit: a desk never hears of an update central did not keep
            where, body = update_message(rollout, action)
            self.publish(f"{where}", body)


# ---------------------------------------------------------------- the bundle over central's HTTPS, resumable


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """``Range: bytes=START-[END]`` → (start, end exclusive), or None for the whole (or a form not served)."""
    match = re.match(r"^bytes=(\d+)-(\d*)$", header.strip())
    if match is None:
        return None
    start, end = int(match[1]), int(match[2]) + 1 if match[2] else size
    return (start, min(end, size)) if start < size and start < end else None


async def fetch_bundle(url: str, sha256: str, part: Path, ssl: Any = None, chunk: int = 65536) -> bytes:
    """The bundle at ``url``, resuming from ``part`` (what an earlier try kept); checked against
    its sha256 name. RolloutError with the reason otherwise (the part file is kept to resume). A
    bundle already whole in ``part`` (fetched ahead of its stage) is not asked for again."""
    import hashlib

    import aiohttp

    have = part.read_bytes() if part.is_file() else b""
    if have and hashlib.sha256(have).hexdigest() == sha256:
        return have
    headers = {"Range": f"bytes={len(have)}-"} if have else {}
    try:
        async with aiohttp.ClientSession() as session, session.get(url, headers=headers, ssl=ssl) as answer:
            if answer.status == 200:
                have = b""  # the server sent it whole
            elif answer.status != 206 and not (answer.status == 416 and have):
                raise RolloutError(f"bundle download: HTTP {answer.status}")
            with part.open("ab" if have else "wb") as out:
                async for piece in answer.content.iter_chunked(chunk):
                    out.write(piece)
    except (aiohttp.ClientError, OSError) as exc:
        raise RolloutError(f"bundle download: {exc}") from None
    data = part.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise RolloutError("downloaded bundle does not match its sha256")
    return data


def bundle_handler(dsn: str) -> Any:
    """``GET /bundles/{sha256}`` for central's HTTPS side (aiohttp): the bundle, with Range for a
    desk resuming a cut download. No token: a bundle is signed firmware, checked by the daemon and
    the unit, and only its sha256 (known from the rollout's retained message) names it."""
    from aiohttp import web

    cache: dict[str, bytes] = {}

    async def handler(request: web.Request) -> web.Response:
        import psycopg

        sha256 = request.match_info["sha256"]
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise web.HTTPNotFound()
        data = cache.get(sha256)
        if data is None:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                row = await (await conn.execute("SELECT data FROM bundles WHERE sha256 = %s", (sha256,))).fetchone()
            if row is None:
                raise web.HTTPNotFound()
            data = cache[sha256] = bytes(row[0])
        wanted = byte_range(request.headers.get("Range", ""), len(data))
        if request.headers.get("Range") and wanted is None:
            return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
        if wanted is None:
            return web.Response(body=data, content_type="application/octet-stream")
        start, end = wanted
        headers = {"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}
        return web.Response(status=206, body=data[start:end], headers=headers, content_type="application/octet-stream")

    return handler
