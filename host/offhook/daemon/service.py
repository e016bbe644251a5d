"""The daemon: the desk unit's single owner, bridging it to the softphone and API clients.

Orchestration only. Bytes are the transport's and session's job, the softphone
dialect the adapter's, the rules the Desk's. This module runs their loops, carries
out the Desk's effects and keeps what must survive a restart (the last confirmed
mute state and the agent state) in a small state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from offhook import linkproto as L
from offhook import settings
from offhook.daemon.desk import Command, Desk, Effect, Notice, Record, Timers, UnitState
from offhook.daemon.memory import DeskMemory
from offhook.daemon.routing import Discover, NoUnit, Route, choose_unit, route
from offhook.daemon.unitsettings import UnitSettings
from offhook.daemon.updates import UpdateRelay, fleet_key
from offhook.metrics.moments import Moment
from offhook.settings import Policy
from offhook.softphone.base import CallState, EventKind, Op, Softphone, SoftphoneError, SoftphoneEvent
from offhook.transport.base import Transport, TransportClosed
from offhook.transport.discovery import candidates
from offhook.transport.hid import HidTransport
from offhook.transport.serial import SerialTransport
from offhook.unitlink import ButtonEvent, HidLeds, Message, UnitInfo, UnitLink, UnitLost, log_frame

if TYPE_CHECKING:
    from offhook.audio.control import AudioChannel

log = logging.getLogger(__name__)

TICK_S = 0.25  # desk timers (wrap-up, ring timeout, hold reminder, mute confirmation)
HEARTBEAT_S = 5.0  # how stale "the last moment this run was known alive" may be after a crash
LOGGED_AS_PRIVATE = frozenset({"peer", "supervisor", "to", "origin"})  # numbers and addresses: never in a log
MAX_BACKOFF_S = 5.0


class UnitLent(Exception):
    """The session ends because a fleet tool borrowed the unit (the message names it)."""


@runtime_checkable
class CallLog(Protocol):
    """A recorder that also closes what a restart cut short (metrics.sink.MetricsSink)."""

    def __call__(self, record: Record) -> object: ...

    def start_run(self) -> list[str]: ...

    def heartbeat(self, mono: float) -> None: ...

    def settle(self, live: dict[str, tuple[bool, bool]], mono: float) -> list[str]: ...


@runtime_checkable
class AnalyticsLog(Protocol):
    """A recorder that also keeps a call's conversation analytics (metrics.sink.MetricsSink)."""

    def analytics(self, call_id: str, figures: dict[str, Any]) -> object: ...


# The call moments the audio pipeline's meters follow (audio/control.py); the consult leg itself
# is not recorded, the customer's call is "consult" (on hold) meanwhile.
AUDIO_EVENTS = {
    Moment.ANSWERED: "connect",
    Moment.HOLD_STARTED: "hold",
    Moment.HOLD_ENDED: "resume",
    Moment.ESCALATED: "consult",
    Moment.HUNG_UP: "end",
}


def loggable(data: dict[str, Any]) -> dict[str, Any]:
    """An event's data for the log: customer numbers and SIP addresses masked (they stay in the
    API event, which goes only to the agent's own authenticated clients)."""
    return {key: "***" if key in LOGGED_AS_PRIVATE and value else value for key, value in data.items()}


def timers_from(config: dict[str, dict[str, Any]]) -> Timers:
    timers = config["timers"]
    return Timers(
        wrap_up_s=timers["wrap_up_s"],
        wrap_up_extend_s=timers["wrap_up_extend_s"],
        ring_timeout_s=timers["ring_timeout_s"],
        hold_reminder_s=timers["hold_reminder_s"],
        mute_confirm_timeout_s=timers["mute_confirm_timeout_s"],
        consult_timeout_s=config["softphone"]["consult_timeout_s"],
    )


class Daemon:
    def __init__(
        self,
        config: dict[str, dict[str, Any]],
        softphone: Softphone,
        state_file: Path,
        transport_factory: Callable[[str], Transport] = SerialTransport,
        discover: Discover = candidates,
        clock: Callable[[], float] = time.monotonic,
        recorder: Callable[[Record], object] | None = None,
        audio_mute: Callable[[bool], None] | None = None,
        hid_transport_factory: Callable[[str], Transport] = HidTransport,
        wall_clock: Callable[[], float] = time.time,
        local_settings: dict[str, Any] | None = None,
        audio_channel: AudioChannel | None = None,
    ) -> None:
        """``audio_mute(muted)`` mutes offhook's own audio path (digital zeros), when it runs.
        ``transport_factory`` opens serial ports (and simulators), ``hid_transport_factory`` HID
        vendor interfaces; which one is used follows ``unit.transport``."""
        self.config = config
        self.local_settings = local_settings or {}  # the desk's TOML as written: "local" in effective settings
        self.desk = Desk(
            timers_from(config),
            supervisor=config["softphone"]["supervisor"],
            hid_softphone=config["softphone"]["hid_softphone"],
            awaiting_snapshot=softphone.announces_calls,
        )
        self.softphone = softphone
        self.state_file = state_file
        self.transport_factory = transport_factory
        self.hid_transport_factory = hid_transport_factory
        self.discover = discover
        self.clock = clock
        self.wall_clock = wall_clock
        self._settled = False  # the softphone's first call list after start has been matched to the store
        self._pending_policy: Policy | None = None  # central's settings, waiting for the desk to be idle
        self.policy_version = 0
        self.effective_settings = settings.effective(None, self.local_settings)
        self._next_heartbeat = 0.0
        self.recorder = recorder
        self.audio_mute = audio_mute
        self.audio_channel = audio_channel  # call events to the audio pipeline, figures back (issue 25)
        self._last_purge: float | None = None  # wall clock of the last retention purge (docs/recording.md)
        self._purging: threading.Thread | None = None
        self.session: UnitLink | None = None
        self.unit: UnitInfo | None = None
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.unit_connected = asyncio.Event()
        self.unit_path = ""  # the unit the daemon owns (or last owned), as `offhook devices` lists it
        self.unit_transport = ""  # the transport in use for it: "serial" or "hid"
        self._lent_to: str | None = None  # who borrowed the unit (fleet tools), or None
        self._lent = asyncio.Event()  # set while lent: ends the session
        self._given_back = asyncio.Event()  # set when returned: the unit loop reconnects
        self._tasks: list[asyncio.Task[Any]] = []
        self._commands: set[asyncio.Task[None]] = set()  # softphone commands in flight
        # Optional probe for benchmarks and diagnostics: trace(point, monotonic seconds).
        self.trace: Callable[[str, float], None] | None = None
        self.memory = DeskMemory(state_file, clock, wall_clock)
        self.memory.restore(self.desk)
        # Firmware for the unit, through this daemon's own session, only while the desk is idle.
        self.updates = UpdateRelay(self, lambda: self.desk.idle, self._broadcast, fleet_key(), self._unit_updated)
        # The unit's part of central's settings, through this daemon's own session (CONFIG_GET/SET).
        self.unit_settings = UnitSettings(self, lambda: self.desk.idle, self._report_settings)

    # ------------------------------------------------------------ running

    async def run(self) -> None:
        self._bookkeep("start_run")
        if self.audio_channel is not None:
            asyncio.get_running_loop().add_reader(self.audio_channel.fileno(), self._audio_figures)
        await self.softphone.start()
        self._tasks = [
            asyncio.create_task(self._unit_loop(), name="unit"),
            asyncio.create_task(self._softphone_loop(), name="softphone"),
            asyncio.create_task(self._tick_loop(), name="ticker"),
            asyncio.create_task(self.updates.run(), name="updates"),
            asyncio.create_task(self.unit_settings.run(), name="unit-settings"),
        ]
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self.audio_channel is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.audio_channel.fileno())
        for task in [*self._tasks, *self._commands]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.session is not None:
            self.session.close()
        await self.softphone.stop()

    async def _tick_loop(self) -> None:
        while True:
            now = self.clock()
            await self.apply(self.desk.tick(now))
            self._purge_recordings()
            if now >= self._next_heartbeat:
                self._next_heartbeat = now + HEARTBEAT_S
                self._bookkeep("heartbeat", now)
            await asyncio.sleep(TICK_S)

    def _bookkeep(self, step: str, *args: Any) -> None:
        """A step of the recorder's restart side (CallLog), if it has one; metrics never take call
        control down."""
        if isinstance(self.recorder, CallLog):
            try:
                getattr(self.recorder, step)(*args)
            except Exception:
                log.exception("metrics: %s failed", step)

    def _settle(self, event: SoftphoneEvent) -> None:
        """The softphone's first call list since start: the store's open calls it no longer has
        ended while no daemon watched; they are completed now, never left open."""
        if self._settled or event.kind is not EventKind.CONNECTED:
            return
        self._settled = True
        live = {c.call_id: (c.state is CallState.ESTABLISHED, c.held) for c in event.calls}
        self._bookkeep("settle", live, self.clock())

    async def _softphone_loop(self) -> None:
        while True:
            event = await self.softphone.events.get()
            if self.trace:
                self.trace("softphone_event", time.monotonic())
            log.debug("softphone: %s %s %s", event.kind.value, event.call_id, event.reason)
            self._settle(event)
            await self.apply(self.desk.softphone_event(event, self.clock()))

    async def _unit_loop(self) -> None:
        backoff = 0.2
        unit_config = self.config["unit"]
        while True:
            if self._lent_to is not None:  # a fleet tool has the port: wait until it is given back
                await self._given_back.wait()
                continue
            try:
                way = self._route(unit_config)
                factory = self.hid_transport_factory if way.kind == "hid" else self.transport_factory
                session = UnitLink(factory(way.path), self.clock, self._from_unit)
                self.unit = await session.connect()
            except (NoUnit, UnitLost, TransportClosed) as exc:
                log.info("unit: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.2
            self.session = session
            self.unit_path, self.unit_transport = way.unit_path, way.kind
            info = self.unit
            log.info("unit %s (%s, firmware %s) on %s %s", info.serial, info.board, info.fw, way.kind, way.path)
            self._broadcast({"event": "unit", "connected": True, "serial": self.unit.serial})
            try:
                await self._send_full_state(session)
                self.unit_connected.set()
                self.unit_settings.connected()  # it gets the settings in effect
                # A task group: when one part ends the session, the others are cancelled with it.
                async with asyncio.TaskGroup() as group:
                    group.create_task(session.run())  # hands what the unit sends to _from_unit
                    group.create_task(self._until_lent())
            except* UnitLost as lost:  # also a plain UnitLost from send_state, before the group
                log.warning("unit lost: %s", lost.exceptions[0])
            except* UnitLent as lent:
                log.info("unit lent to %s", lent.exceptions[0])
            finally:
                self.unit_connected.clear()
                self.session = None
                self.desk.hid_leds = 0  # unknown until the unit reports them again
                session.close()
                self._broadcast({"event": "unit", "connected": False})

    def _route(self, unit_config: dict[str, Any]) -> Route:
        """The configured port, or the discovered unit, and the transport ``unit.transport`` asks for."""
        mode = unit_config["transport"]
        port = unit_config["port"]
        if port:  # with "hid" the configured path is a HID device path
            return Route("hid" if mode == "hid" else "serial", port, port)
        # Without HID discovery a HID-only unit is not seen at all: "serial" keeps to serial ports.
        return route(mode, choose_unit(self.discover(hid=mode != "serial"), unit_config["serial"]))

    async def _until_lent(self) -> None:
        """Ends the session when the unit is lent (raises UnitLent)."""
        await self._lent.wait()
        raise UnitLent(self._lent_to)

    async def lend(self, borrower: str) -> tuple[str, UnitInfo]:
        """Give the unit to a fleet tool (an update) until ``take_back``; returns its path (the
        serial port when it has one, even if the daemon spoke HID) once the daemon has closed
        whichever transport it had. Refused during a call or its wrap-up: an update never
        interrupts a live call.
        """
        if self.unit is None or not self.unit_connected.is_set():
            raise NoUnit("the daemon has no unit connected")
        if self._lent_to is not None:
            raise NoUnit(f"the unit is already lent to {self._lent_to}")
        if not self.desk.idle:
            raise NoUnit("a call or its wrap-up is in progress: try again when the agent is idle")
        if self.updates.busy:
            raise NoUnit("the daemon is updating the unit's firmware")
        self._lent_to = borrower
        self._given_back.clear()
        self._lent.set()
        info = self.unit
        while self.session is not None:  # the session closes its transport on its way out
            await asyncio.sleep(0.01)
        return self.unit_path, info

    def take_back(self) -> None:
        if self._lent_to is not None:
            log.info("unit given back by %s", self._lent_to)
            self._lent_to = None
            self._lent.clear()
            self._given_back.set()

    async def identify(self, seconds: float) -> UnitInfo:
        """Blink the unit (STATE identify flag) for ``seconds`` over this daemon's own session; a
        call that starts meanwhile takes the lamps back at once (its STATE replaces the blink)."""
        session, info = self.session, self.unit
        if session is None or info is None:
            raise NoUnit("the daemon has no unit connected")
        if not self.desk.idle:
            raise NoUnit("a call or its wrap-up is in progress: try again when the agent is idle")
        state = self.desk.full_state(self.clock())
        try:
            await session.send_state(
                state.call if state else L.CALL_IDLE, state.agent if state else L.AGENT_OFFLINE, L.STATE_IDENTIFY, 0
            )
            await asyncio.sleep(seconds)
            if self.session is session:
                if state is None:
                    await session.send_state(L.CALL_IDLE, L.AGENT_OFFLINE, 0, 0)
                await self._send_full_state(session)
        except UnitLost as exc:
            raise NoUnit(f"unit lost: {exc}") from None
        return info

    async def _from_unit(self, message: Message) -> None:
        """What the unit sent, in order (the session's handler, run by session.run())."""
        self.updates.on_message(message)  # an update in flight hears the unit first
        self.unit_settings.on_message(message)  # the answer to its CONFIG_GET/SET
        if isinstance(message, ButtonEvent):
            await self.press(message.button, message.gesture)
        elif isinstance(message, HidLeds):  # what a HID softphone set on the unit's LED outputs
            await self.apply(self.desk.hid_softphone_leds(message.bits, self.clock()))
        elif isinstance(message, UnitInfo):  # it reset (said HELLO again): the whole state at once
            self.unit = message
            if self.session is not None:
                await self._send_full_state(self.session)
            self.unit_settings.connected()
        else:  # CONFIG, UPDATE_STATUS...: nothing for the daemon; LOG and NACK are logged
            log_frame(message, self.unit.serial if self.unit else self.unit_path)

    async def _unit_updated(self) -> None:
        """New firmware runs, and the update answered its HELLO: the daemon's view and the unit's state."""
        if self.session is not None and self.session.info is not None:
            self.unit = self.session.info
            self._broadcast({"event": "unit", "connected": True, "serial": self.unit.serial})
            await self._send_full_state(self.session)
            self.unit_settings.connected()

    async def _send_full_state(self, session: UnitLink) -> None:
        """The whole STATE, unless the softphone's calls are not known yet: then nothing, and the
        unit keeps showing "no host" until the snapshot's STATE (the desk emits it)."""
        state = self.desk.full_state(self.clock())
        if state is not None:
            await session.send_state(state.call, state.agent, state.flags, state.timer_s)

    async def press(self, button: int, gesture: int) -> None:
        """A gesture from the unit (or the API's virtual buttons): the desk decides what it means."""
        await self.apply(self.desk.press(button, gesture, self.clock()))

    async def act(self, action: str) -> None:
        await self.apply(self.desk.act(action, self.clock()))

    # ------------------------------------------------------------ effects

    # ------------------------------------------------------------ floor-wide settings

    def set_policy(self, policy: Policy) -> None:
        """Central's settings for this desk (already checked whole: settings.check_policy). They
        take effect when the desk is idle, never mid-call: a running wrap-up keeps its timer."""
        if policy.version <= max(self.policy_version, self._pending_policy.version if self._pending_policy else 0):
            log.info("settings: version %d ignored (have %d)", policy.version, self.policy_version)
            return
        self._pending_policy = policy
        self._apply_policy_when_idle()

    def _apply_policy_when_idle(self) -> None:
        if not self.desk.idle:
            return
        self.unit_settings.now_idle()
        policy = self._pending_policy
        if policy is None:
            return
        self._pending_policy = None
        values = settings.effective(policy, self.local_settings)
        self.config = settings.apply(self.config, values)
        self.desk.timers = timers_from(self.config)
        self.desk.supervisor = self.config["softphone"]["supervisor"]
        self.policy_version, self.effective_settings = policy.version, values
        self.unit_settings.use(policy)  # checked on the unit, and sent when it differs
        for key, chosen in values.items():
            section, name = settings.POLICY_KEYS[key]
            if chosen.locked and name in self.local_settings.get(section, {}):
                log.warning(
                    "settings: %s is locked by the %s: its value overrides the local config", key, chosen.source
                )
        log.info("settings: version %d in effect", policy.version)
        self._report_settings()

    def _report_settings(self) -> None:
        self._broadcast({"event": "settings", **self.settings_report()})

    def settings_report(self) -> dict[str, Any]:
        """The effective settings, their sources and the policy version, for the floor and the API;
        ``unit``: the unit's settings and the state of their last check on the unit."""
        return {
            "version": self.policy_version,
            "pending": self._pending_policy.version if self._pending_policy is not None else None,
            "effective": {
                key: {"value": chosen.value, "source": chosen.source, "locked": chosen.locked}
                for key, chosen in self.effective_settings.items()
            },
            "unit": self.unit_settings.report(),
        }

    # ------------------------------------------------------------ effects

    async def apply(self, effects: list[Effect]) -> None:
        await self._carry_out(effects)
        self._apply_policy_when_idle()

    async def _carry_out(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Command):
                # Commands run concurrently so a slow softphone never delays the unit's LEDs.
                task = asyncio.create_task(self._execute(effect))
                self._commands.add(task)
                task.add_done_callback(self._commands.discard)
            elif isinstance(effect, UnitState):
                self.memory.save(self.desk)
                if self.session is not None:
                    try:
                        await self.session.send_state(effect.call, effect.agent, effect.flags, effect.timer_s)
                        if self.trace:
                            self.trace("state_sent", time.monotonic())
                    except UnitLost as exc:
                        log.warning("unit lost while sending STATE: %s", exc)
                self._broadcast({"event": "state", **self.desk.snapshot()})
            elif isinstance(effect, Notice) and effect.log_only:
                log.info("%s %s", effect.name, loggable(effect.data))
            elif isinstance(effect, Notice):
                if effect.name in ("mute", "mute_unconfirmed", "command_failed"):
                    self._mute_audio(self.desk.muted)  # the audio path follows the confirmed state
                elif effect.name == "recording_pause":
                    self._record_pause(effect.data)
                level = logging.WARNING if effect.name in ("refused", "command_failed") else logging.INFO
                log.log(level, "%s %s", effect.name, loggable(effect.data))
                self._broadcast({"event": effect.name, **effect.data})
            elif isinstance(effect, Record):
                if self.recorder is not None:
                    try:
                        self.recorder(effect)
                    except Exception:  # metrics must never take call control down
                        log.exception("could not record %s of call %s", effect.moment, effect.call_id)
                    else:
                        self._broadcast({"event": "recorded", "moment": effect.moment, "call": effect.call_id})
                self._tell_audio(effect)  # the pipeline's meters and recorders, with or without a store

    def _mute_audio(self, muted: bool | None) -> None:
        if self.audio_mute is not None and muted is not None:
            try:
                self.audio_mute(muted)
            except OSError as exc:  # no audio pipeline running: the softphone's mute is all there is
                log.debug("audio path not muted: %s", exc)

    def _tell_audio(self, record: Record) -> None:
        """The call moments the pipeline's meter follows; none sent (no pipeline): null figures."""
        event = AUDIO_EVENTS.get(record.moment)
        if self.audio_channel is None or event is None:
            return
        try:
            self.audio_channel.send(record.call_id, event)
        except OSError as exc:
            log.debug("audio pipeline not told %s: %s", event, exc)

    def _audio_figures(self) -> None:
        """The pipeline's replies: a call's figures to its record and the agent's panel."""
        assert self.audio_channel is not None
        for reply in self.audio_channel.receive():
            if isinstance(reply, str):
                log.warning("%s", reply)
                continue
            if isinstance(reply, dict):  # a recording state (docs/recording.md)
                self._recording_reply(reply)
                continue
            call_id, figures = reply
            if isinstance(self.recorder, AnalyticsLog):
                try:
                    self.recorder.analytics(call_id, figures)
                except Exception:  # metrics must never take call control down
                    log.exception("could not record the analytics of call %s", call_id)
            self._broadcast({"event": "analytics", "call": call_id, "figures": figures})

    def recordings_directory(self) -> Path:
        configured = self.config["recording"]["directory"]
        if configured:
            return Path(configured).expanduser()
        from offhook.metrics.store import default_data_dir

        return default_data_dir() / "recordings"

    def _purge_recordings(self) -> None:
        """Retention, when recording is on: at start and then once a day, in a thread of its own
        (a directory of thousands of sidecars is never read on the event loop)."""
        from offhook.recording import store

        rec = self.config.get("recording") or {}
        now = self.wall_clock()
        if not rec.get("enabled") or not store.purge_due(self._last_purge, now):
            return
        if self._purging is not None and self._purging.is_alive():
            return
        self._last_purge = now
        directory, days = self.recordings_directory(), rec["retention_days"]

        def purge() -> None:
            try:
                removed = store.purge(directory, days, now)
            except Exception:  # retention must never take call control down
                log.exception("recordings: retention purge of %s failed", directory)
            else:
                if removed:
                    log.info("recordings: purged %d older than %d days from %s", len(removed), days, directory)

        self._purging = threading.Thread(target=purge, name="offhook-recordings-purge", daemon=True)
        self._purging.start()

    def _recording_reply(self, reply: dict[str, Any]) -> None:
        """The pipeline's recorder reports a call's recording: the desk's lamp and panel follow."""
        reason = reply.get("reason")
        effects = self.desk.recording_changed(
            reply["call"], reply["recording"], self.clock(), reason if isinstance(reason, str) else ""
        )
        task = asyncio.get_running_loop().create_task(self.apply(effects))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    def _record_pause(self, data: dict[str, Any]) -> None:
        """The agent's pause / resume of the call's recording, to the pipeline that records it."""
        if self.audio_channel is None:
            log.warning("recording not paused: no audio pipeline channel")
            return
        try:
            self.audio_channel.record(str(data["call"]), bool(data["paused"]))
        except OSError as exc:
            log.warning("recording not paused: audio pipeline unreachable: %s", exc)

    async def _execute(self, command: Command) -> None:
        if command.op == Op.MUTE:
            self._mute_audio(bool(command.arg))  # privacy first: zeros at once, before the softphone answers
        if self.trace:
            self.trace(f"command:{command.op}", time.monotonic())
        try:
            result = await self._call_softphone(command)
        except SoftphoneError as exc:
            await self.apply(self.desk.command_failed(command, str(exc), self.clock()))
        else:
            await self.apply(self.desk.command_done(command, result, self.clock()))

    async def _call_softphone(self, command: Command) -> Any:
        phone, call_id = self.softphone, command.call_id
        match command.op:
            case Op.ANSWER:
                return await phone.answer(call_id)
            case Op.REJECT:
                return await phone.reject(call_id)
            case Op.HANGUP:
                return await phone.hangup(call_id)
            case Op.HOLD:
                return await phone.hold(call_id)
            case Op.RESUME:
                return await phone.resume(call_id)
            case Op.MUTE:
                return await phone.set_mute(call_id, bool(command.arg))
            case Op.TRANSFER:
                return await phone.transfer(call_id, str(command.arg))
            case Op.DIAL:
                return await phone.dial(str(command.arg))

    def _broadcast(self, message: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            listener(message)
