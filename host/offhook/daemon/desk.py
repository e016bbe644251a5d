"""The agent's desk as a state machine: calls, agent state, mute truth, contact-centre rules.

Sans-IO: it takes button actions, softphone events, command results and clock ticks
(monotonic seconds passed in) and returns effects for the daemon to carry out: a
softphone command, a new unit STATE, an API event, a metrics record. Rules:

- A press is a request; the unit's LEDs follow only what the softphone confirmed.
- Nothing here ever hangs up on or rejects a customer by itself: a ringing call nobody
  answers is left to the softphone, recorded as missed, and the agent goes on break.
- Wrap-up follows every answered call for ``wrap_up_s``; the state button ends it
  early, a double press extends it.
- A call on hold raises a reminder every ``hold_reminder_s`` of continuous hold.
- Escalate consults the supervisor on a second line (customer on hold); when the
  supervisor answers, the consult leg ends and the customer is blind-transferred
  (baresip 1.0 has no attended transfer); no answer in time: back to the customer.
- A HID softphone (Teams, a WebHID page) reports its call through the unit's LED
  outputs (HID_LEDS). Our softphone's call wins the lamps; with none, the HID
  softphone's call is shown; its ringing beside our call is shown as call waiting.
  With ``hid_softphone`` configured, the hook, mute and hold buttons belong to the HID
  softphone while it rings or has a call (hw/hid.md, "Who controls the call").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from offhook import actions
from offhook import linkproto as L
from offhook.actions import Action
from offhook.metrics.moments import Moment
from offhook.softphone.base import Call, CallState, EventKind, Op, SoftphoneEvent

HOLD_REMINDER_FLASH_S = 5.0  # how long the unit shows a hold reminder
# HID LEDs that mean the HID softphone rings or has a call (mute alone does not).
HID_CALL_LEDS = L.HID_LED_OFF_HOOK | L.HID_LED_RING | L.HID_LED_HOLD


@dataclass(frozen=True)
class Command:
    """Ask the softphone to carry out ``op``."""

    op: Op
    call_id: str = ""
    arg: Any = None
    purpose: str = ""  # e.g. "consult" for the escalate flow's own steps


@dataclass(frozen=True)
class UnitState:
    call: int
    agent: int
    flags: int
    timer_s: int


@dataclass(frozen=True)
class Notice:
    """An API event (also logged): e.g. hold_reminder, missed_call, agent_state."""

    name: str
    data: dict[str, Any] = field(default_factory=dict)
    log_only: bool = False  # for the daemon's log, not an API event


@dataclass(frozen=True)
class Record:
    """A moment of a call, for the metrics store."""

    moment: Moment
    call_id: str
    at: float
    data: dict[str, Any] = field(default_factory=dict)


Effect = Command | UnitState | Notice | Record


@dataclass
class CallView:
    call_id: str
    peer: str
    direction: str
    state: str  # ringing | dialing | active | held
    ring_started: float
    answered_at: float | None = None
    held_since: float | None = None
    reminders_sent: int = 0
    muted: bool | None = None  # as the softphone confirmed it for this call; None: not known
    missed: bool = False
    consult: bool = False  # the escalate flow's supervisor leg


@dataclass
class Timers:
    wrap_up_s: float = 30
    wrap_up_extend_s: float = 30
    ring_timeout_s: float = 20
    hold_reminder_s: float = 120
    mute_confirm_timeout_s: float = 1.0
    consult_timeout_s: float = 30


class Desk:
    def __init__(
        self,
        timers: Timers | None = None,
        supervisor: str = "",
        hid_softphone: bool = False,
        awaiting_snapshot: bool = False,
    ) -> None:
        """``awaiting_snapshot``: claim nothing on the unit (send no STATE) until the softphone's
        first call list (CONNECTED) is in; a restarted daemon does not know the calls before it."""
        self.timers = timers or Timers()
        self.supervisor = supervisor
        self.hid_softphone = hid_softphone  # a HID softphone drives calls too: the unit keeps its HID inputs
        self.hid_leds = 0  # the Telephony LEDs a HID softphone set (HID_LEDS from the unit)
        self.calls: dict[str, CallView] = {}
        self.agent = L.AGENT_AVAILABLE
        self.wrap_up_until: float | None = None
        self._recalled_mutes: dict[str, bool] = {}  # confirmed before a restart, per Call-ID
        self.awaiting_snapshot = awaiting_snapshot
        self.mute_pending_until: float | None = None
        self.reminder_until: float | None = None
        self.consult_customer: str | None = None  # customer call id while consulting
        self.consult_deadline: float | None = None
        self.identify = False
        self.pairing = False
        self.updating = False
        self.softphone_up = True
        # Call-ID -> "on" | "paused" | "failed", as the recorder confirmed it (docs/recording.md).
        self.recording: dict[str, str] = {}
        self._wrap_call = ""  # the call whose wrap-up is running (for its metrics record)
        self._last_state: UnitState | None = None
        self._now = 0.0

    # ------------------------------------------------------------ derived state

    @property
    def active(self) -> CallView | None:
        return next((c for c in self.calls.values() if c.state == "active" and not c.consult), None)

    @property
    def ringing(self) -> CallView | None:
        return next((c for c in self.calls.values() if c.state == "ringing"), None)

    @property
    def held(self) -> CallView | None:
        return next((c for c in self.calls.values() if c.state == "held"), None)

    @property
    def idle(self) -> bool:
        """No call of ours in any state, and the agent neither on one nor in its wrap-up."""
        return not self.calls and self.agent not in (L.AGENT_ON_CALL, L.AGENT_WRAP_UP)

    @property
    def current(self) -> CallView | None:
        """The call the mute button acts on and the mute lamp shows."""
        return self.active or self.held

    @property
    def muted(self) -> bool | None:
        """The current call's mute as the softphone confirmed it; None: no call, or not known."""
        call = self.current
        return None if call is None else call.muted

    @property
    def mute_unconfirmed(self) -> bool:
        """A call is in progress whose mute nobody confirmed (baresip can neither be asked for it
        nor reports it): after a restart, unless this daemon confirmed it for that very call."""
        call = self.current
        return call is not None and call.muted is None

    def mutes(self) -> dict[str, bool]:
        """Every call's confirmed mute by Call-ID: what a restarted daemon may claim again."""
        return {c.call_id: c.muted for c in self.calls.values() if c.muted is not None}

    @property
    def consult_call(self) -> CallView | None:
        return next((c for c in self.calls.values() if c.consult), None)

    @property
    def hid_call(self) -> int:
        """The HID softphone's call as a STATE call value: hold, then off-hook, then ring decides."""
        leds = self.hid_leds
        if leds & L.HID_LED_HOLD:
            return L.CALL_HELD
        if leds & L.HID_LED_OFF_HOOK:
            return L.CALL_ACTIVE
        if leds & L.HID_LED_RING:
            return L.CALL_RINGING
        return L.CALL_IDLE

    @property
    def hid_owns_buttons(self) -> bool:
        """A configured HID softphone rings or has a call: the unit's hook, mute and hold presses
        went to it as HID reports, so acting on them here too could answer a call twice."""
        return self.hid_softphone and bool(self.hid_leds & HID_CALL_LEDS)

    def unit_state(self) -> UnitState:
        active, ringing, held = self.active, self.ringing, self.held
        consult = self.consult_call
        if active or (consult and consult.state == "active"):
            call = L.CALL_ACTIVE
        elif ringing:
            call = L.CALL_RINGING
        elif held:
            call = L.CALL_HELD
        elif any(c.state == "dialing" for c in self.calls.values()):
            call = L.CALL_DIALING
        else:
            call = L.CALL_IDLE
        flags = 0
        if self.muted and (active or held):
            flags |= L.STATE_MUTED
        if self.mute_unconfirmed and (active or held):
            flags |= L.STATE_MUTE_UNCONFIRMED
        if self.reminder_until is not None:
            flags |= L.STATE_HOLD_REMINDER
        if ringing and (active or held):
            flags |= L.STATE_CALL_WAITING
        leds = self.hid_leds
        if call == L.CALL_IDLE:
            # Our softphone has no call: the lamps show the HID softphone's.
            call = self.hid_call
            if call in (L.CALL_ACTIVE, L.CALL_HELD):
                if leds & L.HID_LED_MUTE:
                    flags |= L.STATE_MUTED
                if leds & L.HID_LED_RING:
                    flags |= L.STATE_CALL_WAITING
        elif leds & L.HID_LED_RING and call != L.CALL_RINGING:
            flags |= L.STATE_CALL_WAITING  # our call wins; the HID softphone's ringing one waits
        if consult is not None:
            flags |= L.STATE_CONSULT
        recording = self.recording_state
        if recording == "failed":
            flags |= L._STATE_RECORDING_FAILED
        elif recording != "off":
            flags |= L._STATE_RECORDING | (L._STATE_RECORDING_PAUSED if recording == "paused" else 0)
        for on, bit in (
            (self.identify, L.STATE_IDENTIFY),
            (self.pairing, L.STATE_PAIRING),
            (self.updating, L.STATE_UPDATING),
            (self.hid_softphone, L.STATE_HID_SOFTPHONE),
        ):
            if on:
                flags |= bit
        # The unit has no display: its one timer is wrap-up time left (the breathe pattern).
        timer = 0
        if self.agent == L.AGENT_WRAP_UP and self.wrap_up_until is not None:
            timer = max(0, round(self.wrap_up_until - self._now))
        return UnitState(call, self.agent, flags, timer)

    def snapshot(self) -> dict[str, Any]:
        """Everything an API client or the agent panel shows."""
        state = self.unit_state()
        return {
            "call": L.CALL_NAMES[state.call],
            "agent": L.AGENT_NAMES[state.agent],
            "muted": bool(self.muted),
            "mute_confirmed": not self.mute_unconfirmed,
            "wrap_up_remaining_s": state.timer_s if state.agent == L.AGENT_WRAP_UP else None,
            "consulting": self.consult_call is not None,
            "recording": self.recording_state,
            "softphone_connected": self.softphone_up,
            "hid_softphone": {"call": L.CALL_NAMES[self.hid_call], "muted": bool(self.hid_leds & L.HID_LED_MUTE)},
            "calls": [
                {
                    "id": c.call_id,
                    "peer": c.peer,
                    "direction": c.direction,
                    "state": c.state,
                    "talk_s": None if c.answered_at is None else round(self._now - c.answered_at, 1),
                    "held_s": None if c.held_since is None else round(self._now - c.held_since, 1),
                    "next_hold_reminder_s": None
                    if c.held_since is None
                    else round(c.held_since + (c.reminders_sent + 1) * self.timers.hold_reminder_s - self._now, 1),
                }
                for c in self.calls.values()
            ],
        }

    def _with_state(self, effects: list[Effect]) -> list[Effect]:
        """Append a UnitState when what the unit shows has changed (and anything is known)."""
        if self.awaiting_snapshot:
            return effects
        state = self.unit_state()
        if state != self._last_state:
            self._last_state = state
            effects.append(state)
        return effects

    def full_state(self, now: float) -> UnitState | None:
        """The whole STATE to send after a (re)connect of the unit, or None while the softphone's
        calls are not known yet (the unit keeps its "no host" scene, which claims nothing). The
        unit reports its HID LEDs again after this STATE (if any is on), so what we knew of them
        is forgotten here."""
        self._now = now
        self.hid_leds = 0
        if self.awaiting_snapshot:
            return None
        self._last_state = self.unit_state()
        return self._last_state

    # ------------------------------------------------------------ agent actions

    def press(self, button: int, gesture: int, now: float) -> list[Effect]:
        """A gesture on the unit: the desk picks the action for its situation (offhook.actions.TABLE)."""
        self._now = now
        idle = self.ringing is None and self.active is None
        situation = actions.situations(
            pairing=self.pairing and idle,
            ringing=self.ringing is not None,
            wrap_up=self.agent == L.AGENT_WRAP_UP,
            hid_call=self.hid_owns_buttons,
        )
        action = actions.lookup(button, gesture, situation)
        names = {"button": L.BUTTON_NAMES[button], "gesture": L.GESTURE_NAMES.get(gesture, str(gesture))}
        pressed = Notice("pressed", {**names, "action": action or "nothing"}, log_only=True)
        if action is None:
            return [pressed]
        return [pressed, *self.act(action, now)]

    def act(self, action: Action | str, now: float) -> list[Effect]:
        """An agent action (from a gesture through ``press``, or the API)."""
        self._now = now
        effects: list[Effect] = []
        try:
            handler = getattr(self, f"_do_{Action(action).value}")
        except ValueError:
            effects.append(Notice("refused", {"action": str(action), "reason": "unknown action"}))
        else:
            reason = handler(effects, now)
            if reason:
                effects.append(Notice("refused", {"action": str(action), "reason": reason}))
        return self._with_state(effects)

    def _do_answer(self, effects: list[Effect], now: float) -> str:
        ringing = self.ringing
        if ringing is None:
            return "no ringing call"
        effects.append(Command(Op.ANSWER, ringing.call_id))
        return ""

    def _do_reject(self, effects: list[Effect], now: float) -> str:
        ringing = self.ringing
        if ringing is None:
            return "no ringing call"
        effects.append(Command(Op.REJECT, ringing.call_id))
        return ""

    def _do_hangup(self, effects: list[Effect], now: float) -> str:
        call = self.active or self.held
        if call is None:
            return "no call to hang up"
        effects.append(Command(Op.HANGUP, call.call_id))
        return ""

    def _do_hook(self, effects: list[Effect], now: float) -> str:
        """The hook button: answer a ringing call, else hang up the call in progress."""
        if self.ringing is not None:
            return self._do_answer(effects, now)
        if self.consult_call is not None:
            return self._do_escalate(effects, now)  # hook during consult: back to the customer
        return self._do_hangup(effects, now)

    def _do_hold(self, effects: list[Effect], now: float) -> str:
        """Toggle hold: hold the active call, or resume the held one."""
        if self.active is not None:
            effects.append(Command(Op.HOLD, self.active.call_id))
        elif self.held is not None and self.consult_call is None:
            effects.append(Command(Op.RESUME, self.held.call_id))
        else:
            return "no call to hold or resume"
        return ""

    def _do_mute(self, effects: list[Effect], now: float) -> str:
        """Toggle mute of the call in progress; the LED changes only when confirmed."""
        call = self.active or self.held
        if call is None:
            return "no call to mute"
        if self.mute_pending_until is not None:
            return "a mute request is already waiting for the softphone"
        target = not self.muted  # unknown: mute (privacy first)
        self.mute_pending_until = now + self.timers.mute_confirm_timeout_s
        effects.append(Command(Op.MUTE, call.call_id, target))
        return ""

    def _do_escalate(self, effects: list[Effect], now: float) -> str:
        consult = self.consult_call
        if consult is not None:  # second press: cancel the consult, back to the customer
            return self._end_consult(effects, "cancelled by the agent")
        if not self.supervisor:
            return "no supervisor configured"
        customer = self.active
        if customer is None:
            return "no active call to escalate"
        self.consult_customer = customer.call_id
        self.consult_deadline = now + self.timers.consult_timeout_s
        effects.append(Command(Op.HOLD, customer.call_id, purpose="consult"))
        effects.append(Command(Op.DIAL, arg=self.supervisor, purpose="consult"))
        effects.append(Notice("consult_started", {"customer": customer.call_id, "supervisor": self.supervisor}))
        effects.append(Record(Moment.ESCALATED, customer.call_id, now, {"supervisor": self.supervisor}))
        return ""

    def _end_consult(self, effects: list[Effect], why: str) -> str:
        consult, customer_id = self.consult_call, self.consult_customer
        if consult is not None:
            effects.append(Command(Op.HANGUP, consult.call_id, purpose="consult"))
        if customer_id in self.calls:
            effects.append(Command(Op.RESUME, customer_id, purpose="consult"))
        self.consult_customer = None
        self.consult_deadline = None
        effects.append(Notice("consult_ended", {"reason": why}))
        return ""

    def _do_toggle_break(self, effects: list[Effect], now: float) -> str:
        if self.agent == L.AGENT_WRAP_UP:
            return self._do_end_wrap_up(effects, now)
        if self.agent == L.AGENT_ON_CALL:
            return "on a call"
        self._set_agent(L.AGENT_BREAK if self.agent == L.AGENT_AVAILABLE else L.AGENT_AVAILABLE, effects, "button")
        return ""

    def _do_go_offline(self, effects: list[Effect], now: float) -> str:
        if self.agent == L.AGENT_ON_CALL:
            return "on a call"
        self._set_agent(L.AGENT_OFFLINE, effects, "button")
        return ""

    def _do_end_wrap_up(self, effects: list[Effect], now: float) -> str:
        if self.agent != L.AGENT_WRAP_UP:
            return "not in wrap-up"
        self._finish_wrap_up(effects, now)
        return ""

    def _do_extend_wrap_up(self, effects: list[Effect], now: float) -> str:
        if self.agent != L.AGENT_WRAP_UP or self.wrap_up_until is None:
            return "not in wrap-up"
        self.wrap_up_until += self.timers.wrap_up_extend_s
        effects.append(Notice("wrap_up_extended", {"remaining_s": round(self.wrap_up_until - now)}))
        return ""

    def start_pairing(self, origin: str, now: float) -> list[Effect]:
        """A web origin asks to pair: the unit shows the request until the agent answers."""
        self._now = now
        self.pairing = True
        return self._with_state([Notice("pairing_request", {"origin": origin})])

    def _do_approve_pairing(self, effects: list[Effect], now: float) -> str:
        return self._answer_pairing(effects, True)

    def _do_refuse_pairing(self, effects: list[Effect], now: float) -> str:
        return self._answer_pairing(effects, False)

    def _answer_pairing(self, effects: list[Effect], approved: bool) -> str:
        if not self.pairing:
            return "no pairing request"
        self.pairing = False
        effects.append(Notice("pairing_answer", {"approved": approved}))
        return ""

    def _do_volume_up(self, effects: list[Effect], now: float) -> str:
        return "volume is set on the headset or the PC (the softphone has no volume command)"

    _do_volume_down = _do_volume_up

    def set_agent_state(self, name: str, now: float) -> list[Effect]:
        """The API sets agent state (a contact-centre platform following the agent)."""
        self._now = now
        effects: list[Effect] = []
        if name not in ("available", "break", "offline"):
            effects.append(
                Notice("refused", {"action": f"agent:{name}", "reason": "settable: available, break, offline"})
            )
        elif self.agent == L.AGENT_ON_CALL:
            effects.append(Notice("refused", {"action": f"agent:{name}", "reason": "on a call"}))
        else:
            if self.agent == L.AGENT_WRAP_UP:
                self._finish_wrap_up(effects, now, next_state=L.AGENT_NAMES.index(name))
            else:
                self._set_agent(L.AGENT_NAMES.index(name), effects, "api")
        return self._with_state(effects)

    def _set_agent(self, agent: int, effects: list[Effect], why: str) -> None:
        if agent != self.agent:
            if self.agent == L.AGENT_WRAP_UP:
                self._end_wrap_record(effects)  # however wrap-up ends, its call's record completes
            self.agent = agent
            effects.append(Notice("agent_state", {"state": L.AGENT_NAMES[agent], "why": why}))

    def _end_wrap_record(self, effects: list[Effect]) -> None:
        self.wrap_up_until = None
        if self._wrap_call:  # empty after a restart: that call's record was closed at the old run's heartbeat
            effects.append(Record(Moment.WRAP_UP_ENDED, self._wrap_call, self._now))
            self._wrap_call = ""

    def _finish_wrap_up(self, effects: list[Effect], now: float, next_state: int = L.AGENT_AVAILABLE) -> None:
        self._set_agent(next_state, effects, "wrap-up ended")

    # ------------------------------------------------------------ recording

    @property
    def recording_state(self) -> str:
        """The current call's recording: off, on, paused or failed."""
        call = self.current
        return "off" if call is None else self.recording.get(call.call_id, "off")

    def _do_toggle_recording_pause(self, effects: list[Effect], now: float) -> str:
        """Ask the recorder to pause or resume; the lamp follows only its confirmation."""
        call, state = self.current, self.recording_state
        if call is None or state == "off":
            return "this call is not being recorded"
        if state == "failed":
            return "this call's recording stopped on an error"
        effects.append(Notice("recording_pause", {"call": call.call_id, "paused": state == "on"}))
        return ""

    def recording_changed(self, call_id: str, state: str, now: float, reason: str = "") -> list[Effect]:
        """The recorder reports a call's recording: on, paused, failed (an alert) or off."""
        self._now = now
        effects: list[Effect] = []
        known = call_id in self.calls and state in ("on", "paused", "failed", "off")
        if known and self.recording.get(call_id, "off") != state:
            self.recording[call_id] = state
            data = {"call": call_id, "state": state, **({"reason": reason} if reason else {})}
            effects.append(Notice("recording_failed" if state == "failed" else "recording", data))
        return self._with_state(effects)

    # ------------------------------------------------------------ HID softphone

    def hid_softphone_leds(self, leds: int, now: float) -> list[Effect]:
        """The unit reported the Telephony LEDs a HID softphone set (linkproto.HID_LED_* bits)."""
        self._now = now
        effects: list[Effect] = []
        if leds != self.hid_leds:
            self.hid_leds = leds
            muted = bool(leds & L.HID_LED_MUTE)
            effects.append(Notice("hid_softphone", {"call": L.CALL_NAMES[self.hid_call], "muted": muted}))
        return self._with_state(effects)

    def _do_to_hid_softphone(self, effects: list[Effect], now: float) -> str:
        """A hook, mute or hold press the HID softphone acts on (its HID report went out): not ours."""
        effects.append(Notice("left_to_hid_softphone", {"call": L.CALL_NAMES[self.hid_call]}))
        return ""

    # ------------------------------------------------------------ softphone

    def softphone_event(self, event: SoftphoneEvent, now: float) -> list[Effect]:
        self._now = now
        effects: list[Effect] = []
        kind, call_id = event.kind, event.call_id
        call = self.calls.get(call_id)
        if kind is EventKind.INCOMING:
            self.calls[call_id] = CallView(call_id, event.peer, "inbound", "ringing", now)
            effects.append(Record(Moment.RINGING, call_id, now, {"peer": event.peer, "direction": "inbound"}))
            effects.append(Notice("incoming", {"call": call_id, "peer": event.peer}))
        elif kind is EventKind.RINGING:
            consult = self.consult_customer is not None and event.peer == self.supervisor
            self.calls.setdefault(call_id, CallView(call_id, event.peer, "outbound", "dialing", now, consult=consult))
            if not consult:
                effects.append(Record(Moment.RINGING, call_id, now, {"peer": event.peer, "direction": "outbound"}))
        elif kind is EventKind.ESTABLISHED:
            self._established(call_id, event, effects, now)
        elif kind is EventKind.CLOSED:
            self._closed(call_id, event.reason, effects, now)
        elif kind in (EventKind.HELD, EventKind.RESUMED) and call is not None:
            self._hold_changed(call, kind is EventKind.HELD, effects, now)
        elif kind in (EventKind.MUTED, EventKind.UNMUTED):
            self._mute_confirmed(call or self.current, kind is EventKind.MUTED, effects)
        elif kind is EventKind.CONNECTED:
            self.softphone_up = True
            self._rebuild(event.calls, effects, now)
        elif kind is EventKind.DISCONNECTED:
            self.softphone_up = False
            effects.append(Notice("softphone", {"connected": False, "reason": event.reason}))
        return self._with_state(effects)

    def _established(self, call_id: str, event: SoftphoneEvent, effects: list[Effect], now: float) -> None:
        call = self.calls.get(call_id)
        if call is None:
            call = CallView(call_id, event.peer, event.direction or "inbound", "active", now)
            self.calls[call_id] = call
        if call.consult:
            call.state = "active"
            # The supervisor answered: end the consult leg, then hand the customer over.
            customer = self.consult_customer
            effects.append(Command(Op.HANGUP, call_id, purpose="consult"))
            if customer in self.calls:
                effects.append(Command(Op.TRANSFER, customer, self.supervisor, purpose="consult"))
                effects.append(Record(Moment.TRANSFERRED, customer, now, {"to": self.supervisor, "escalation": True}))
            self.consult_customer = None
            self.consult_deadline = None
            effects.append(Notice("consult_answered", {"supervisor": self.supervisor}))
            return
        # Other established calls were put on hold by the softphone when this one was answered.
        for other in self.calls.values():
            if other is not call and other.state == "active" and not other.consult:
                self._hold_changed(other, True, effects, now)
        call.state = "active"
        call.answered_at = now
        call.muted = False  # established while we watched: un-muted, until a toggle is confirmed
        self.mute_pending_until = None
        self._set_agent(L.AGENT_ON_CALL, effects, "call answered")
        effects.append(Record(Moment.ANSWERED, call_id, now))
        effects.append(Notice("established", {"call": call_id, "peer": call.peer}))

    def _closed(self, call_id: str, reason: str, effects: list[Effect], now: float) -> None:
        call = self.calls.pop(call_id, None)
        self.recording.pop(call_id, None)
        if call is None:
            return
        if call.consult:
            if self.consult_customer is not None:  # supervisor refused or hung up before answering
                self._end_consult(effects, f"supervisor leg closed: {reason}")
            return
        if call.state == "held":
            effects.append(Record(Moment.HOLD_ENDED, call_id, now))
        if call.answered_at is None:
            if not call.missed:
                moment = Moment.ABANDONED if call.direction == "inbound" else Moment.UNANSWERED
                effects.append(Record(moment, call_id, now, {"reason": reason}))
        else:
            effects.append(Record(Moment.HUNG_UP, call_id, now, {"reason": reason}))
        effects.append(Notice("closed", {"call": call_id, "reason": reason}))
        if call_id == self.consult_customer:  # the customer hung up while we consulted
            self._end_consult(effects, "customer hung up")
        if not any(c.state in ("active", "held") for c in self.calls.values()):
            self.reminder_until = None
            if call.answered_at is not None:
                if self.agent == L.AGENT_WRAP_UP:
                    self._end_wrap_record(effects)  # two calls gone at once (softphone reconnect)
                self.wrap_up_until = now + self.timers.wrap_up_s
                self._wrap_call = call_id
                self._set_agent(L.AGENT_WRAP_UP, effects, "call ended")
                if self.timers.wrap_up_s == 0:
                    self._finish_wrap_up(effects, now)
        elif call.answered_at is not None:
            # The agent is busy on another call, so this one gets no wrap-up: its record completes now.
            effects.append(Record(Moment.WRAP_UP_ENDED, call_id, now))

    def _hold_changed(self, call: CallView, held: bool, effects: list[Effect], now: float) -> None:
        if held and call.state != "held":
            call.state = "held"
            call.held_since = now
            call.reminders_sent = 0
            effects.append(Record(Moment.HOLD_STARTED, call.call_id, now))
            effects.append(Notice("held", {"call": call.call_id}))
        elif not held and call.state == "held":
            call.state = "active"
            call.held_since = None
            if not any(c.state == "held" for c in self.calls.values()):
                self.reminder_until = None
            effects.append(Record(Moment.HOLD_ENDED, call.call_id, now))
            effects.append(Notice("resumed", {"call": call.call_id}))

    def _mute_confirmed(self, call: CallView | None, muted: bool, effects: list[Effect]) -> None:
        self.mute_pending_until = None
        if call is None:
            return
        changed = muted != call.muted
        call.muted = muted
        if changed and call is self.current:
            effects.append(Notice("mute", {"muted": muted}))

    def _rebuild(self, calls: list[Call], effects: list[Effect], now: float) -> None:
        """The softphone (re)connected: its call list replaces ours, keeping our timings."""
        fresh: dict[str, CallView] = {}
        known_by_peer = {c.peer: c for c in self.calls.values()}
        for call in calls:
            view = self.calls.get(call.call_id) or known_by_peer.get(call.peer)
            if call.state is CallState.INCOMING:
                state = "ringing"
            elif call.state is CallState.OUTGOING:
                state = "dialing"
            else:
                state = "held" if call.held else "active"
            if view is None:
                view = CallView(call.call_id, call.peer, call.direction, state, now)
                if state in ("active", "held"):
                    view.answered_at = now
            view.call_id = call.call_id
            if state == "held" and view.held_since is None:
                view.held_since = now
            view.state = state
            fresh[call.call_id] = view
        for gone in set(self.calls) - {c.call_id for c in fresh.values()}:
            self._closed(gone, "gone after softphone reconnect", effects, now)
        self.calls = fresh
        self._mute_after_snapshot(calls)
        if any(c.state in ("active", "held") for c in fresh.values()):
            self._set_agent(L.AGENT_ON_CALL, effects, "softphone reconnected")
        if self.awaiting_snapshot:
            self.awaiting_snapshot = False
            self._last_state = None  # the unit has been shown nothing yet: the next STATE goes out
        effects.append(Notice("softphone", {"connected": True, "calls": len(fresh)}))

    def _mute_after_snapshot(self, calls: list[Call]) -> None:
        """What the mute lamp may claim after a snapshot, per call. Evidence is: the softphone
        reports it; or this daemon (or the one before a restart) confirmed it for this very
        Call-ID, which includes "established while the daemon watched, never toggled since:
        un-muted". A call without evidence stays unconfirmed (``muted`` None)."""
        for reported in calls:
            view = self.calls.get(reported.call_id)
            if view is None:
                continue
            if reported.muted is not None:
                view.muted = reported.muted
            elif view.muted is None:
                view.muted = self._recalled_mutes.get(reported.call_id)
        self._recalled_mutes = {}

    def restore(self, mutes: dict[str, bool], agent: int, now: float, wrap_up_left_s: float = 0.0) -> None:
        """After a daemon restart: the mute confirmed per Call-ID (claimed again only for a call
        the softphone's snapshot still has) and the agent state. A wrap-up the restart
        interrupted goes on for what is left of it; its call's record was closed at the old
        run's last heartbeat, so no record follows this one."""
        self._now = now
        self._recalled_mutes = dict(mutes)
        if agent == L.AGENT_WRAP_UP:
            if wrap_up_left_s > 0:
                self.wrap_up_until = now + wrap_up_left_s
                self._wrap_call = ""
            else:
                agent = L.AGENT_AVAILABLE
        elif agent == L.AGENT_ON_CALL:
            agent = L.AGENT_AVAILABLE  # the softphone's call list decides (CONNECTED)
        self.agent = agent

    def command_done(self, command: Command, result: Any, now: float) -> list[Effect]:
        """The softphone confirmed a command; ``result`` is what it returned."""
        self._now = now
        effects: list[Effect] = []
        if command.op == Op.MUTE:
            self._mute_confirmed(self.calls.get(command.call_id), bool(result), effects)
        elif command.op in (Op.HOLD, Op.RESUME) and command.call_id in self.calls:
            self._hold_changed(self.calls[command.call_id], bool(result), effects, now)
        elif command.op == Op.DIAL and command.purpose == "consult" and isinstance(result, str):
            call = self.calls.setdefault(result, CallView(result, str(command.arg), "outbound", "dialing", now))
            call.consult = True
        return self._with_state(effects)

    def command_failed(self, command: Command, reason: str, now: float) -> list[Effect]:
        """The softphone refused or did not answer: the unit shows the true state again."""
        self._now = now
        effects: list[Effect] = [Notice("command_failed", {"op": command.op, "reason": reason})]
        if command.op == Op.MUTE:
            self.mute_pending_until = None
        if command.purpose == "consult" and command.op == Op.DIAL:
            self._end_consult(effects, f"could not call the supervisor: {reason}")
        return self._with_state(effects)

    # ------------------------------------------------------------ time

    def tick(self, now: float) -> list[Effect]:
        self._now = now
        effects: list[Effect] = []
        if self.mute_pending_until is not None and now >= self.mute_pending_until:
            self.mute_pending_until = None
            effects.append(Notice("mute_unconfirmed", {"muted": self.muted}))
        for call in self.calls.values():
            if call.state == "ringing" and not call.missed and now - call.ring_started >= self.timers.ring_timeout_s:
                # Ring-no-answer: the call is left ringing in the softphone; the agent is made not ready.
                call.missed = True
                effects.append(Record(Moment.MISSED, call.call_id, now))
                effects.append(Notice("missed_call", {"call": call.call_id, "peer": call.peer}))
                if self.agent in (L.AGENT_AVAILABLE, L.AGENT_WRAP_UP):
                    self._set_agent(L.AGENT_BREAK, effects, "ring not answered")
            if call.state == "held" and call.held_since is not None:
                # Whole reminder periods held so far; after a clock jump (sleep) this catches up
                # in one step: one reminder, not a burst of the ones missed.
                periods = int((now - call.held_since) // self.timers.hold_reminder_s)
                if periods > call.reminders_sent:
                    call.reminders_sent = periods
                    self.reminder_until = now + HOLD_REMINDER_FLASH_S
                    held_for = round(now - call.held_since)
                    effects.append(Notice("hold_reminder", {"call": call.call_id, "held_s": held_for}))
        if self.reminder_until is not None and now >= self.reminder_until:
            self.reminder_until = None
        if self.consult_deadline is not None and now >= self.consult_deadline:
            self._end_consult(effects, "supervisor did not answer")
        if self.agent == L.AGENT_WRAP_UP and self.wrap_up_until is not None and now >= self.wrap_up_until:
            self._finish_wrap_up(effects, now)
        return self._with_state(effects)
