"""The real-time pipeline's control socket: the daemon and `offhook audio run`, both ways.

Datagrams on two Unix sockets. Daemon -> pipeline (``offhook-audio.sock``): ``mute`` / ``unmute``
(bytes, as ever: privacy first, nothing else on that path) and call events, one JSON object each:
``{"call": "<SIP Call-ID>", "event": "connect|hold|resume|consult|end"}``. Pipeline -> daemon
(whatever address the event came from; :class:`AudioChannel` binds ``offhook-daemon.sock``): at
``end``, ``{"call": ..., "figures": {...}}`` (``CallFigures.as_dict()`` without its per-event lists);
a bad message gets ``{"error": "one line"}`` and changes nothing. Events for a Call-ID the pipeline never saw connect
are ignored: it was not running then, and such a call's figures stay null, never zero.

Recording (docs/recording.md), when the pipeline records: the daemon sends
``{"call": ..., "record": "pause|resume"}`` (the agent's pause); the pipeline reports every change
of a call's recording, also unasked (a writer that failed on a full disk), as
``{"call": ..., "recording": "on|paused|failed|off", ...}`` (``reason`` with failed; ``file`` and
``status`` with off) to the daemon it last heard from.

Kept apart from realtime.py so the daemon can talk to the pipeline without importing numpy,
scipy and the echo canceller (which would triple its memory); :class:`CallMeters` imports the
analytics core only when a pipeline builds it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from offhook.audio.analytics import ConversationMeter
    from offhook.audio.chain import Float
    from offhook.recording.calls import CallRecorders

log = logging.getLogger(__name__)

EVENTS = ("connect", "hold", "resume", "consult", "end")
RECORD = ("pause", "resume")
RECORDING_STATES = ("on", "paused", "failed", "off")
MAX_DATAGRAM = 65536  # figures are ~1 kB; a Call-ID is at most a few hundred bytes
MAX_CALL_ID = 512


def control_socket_path() -> Path:
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    return base / "offhook-audio.sock"


def daemon_socket_path() -> Path:
    return control_socket_path().with_name("offhook-daemon.sock")


def request_mute(muted: bool, path: Path | None = None) -> None:
    """For the daemon: tell a running `offhook audio run` to mute or un-mute (datagram)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"mute" if muted else b"unmute", str(path or control_socket_path()))


def call_event(call_id: str, event: str) -> bytes:
    if event not in EVENTS:
        raise ValueError(f"unknown call event {event!r} (one of {', '.join(EVENTS)})")
    return json.dumps({"call": call_id, "event": event}).encode()


def record_request(call_id: str, paused: bool) -> bytes:
    return json.dumps({"call": call_id, "record": "pause" if paused else "resume"}).encode()


def parse_event(message: bytes) -> tuple[str, str]:
    """(Call-ID, event) from a daemon's datagram; ValueError with one line for anything else."""
    call, kind, value = parse_message(message)
    if kind != "event":
        raise ValueError('a call event is {"call": CALL_ID, "event": EVENT} and nothing else')
    return call, value


def parse_message(message: bytes) -> tuple[str, str, str]:
    """(Call-ID, "event" or "record", value) from a daemon's datagram; ValueError with one line
    for anything else."""
    try:
        data = json.loads(message)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not a JSON call event") from None
    if not isinstance(data, dict) or set(data) not in ({"call", "event"}, {"call", "record"}):
        raise ValueError('a call event is {"call": CALL_ID, "event": EVENT} and nothing else')
    call = data["call"]
    if not isinstance(call, str) or not call or len(call) > MAX_CALL_ID or not call.isprintable():
        raise ValueError("call must be a non-empty printable SIP Call-ID")
    if "record" in data:
        if data["record"] not in RECORD:
            raise ValueError("record must be pause or resume")
        return call, "record", data["record"]
    if data["event"] not in EVENTS:
        raise ValueError(f"event must be one of {', '.join(EVENTS)}")
    return call, "event", data["event"]


Reply = tuple[str, dict[str, Any]] | dict[str, Any] | str


def parse_reply(message: bytes) -> Reply:
    """A pipeline's reply: (Call-ID, figures); a recording state ``{"call", "recording", ...}``
    as a dict; or the one-line error it sent (or one about the reply)."""
    try:
        data = json.loads(message)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "audio pipeline sent something that is not JSON"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return f"audio pipeline refused: {data['error']}"
    if isinstance(data, dict) and "recording" in data:
        if not isinstance(data.get("call"), str) or data["recording"] not in RECORDING_STATES:
            return "audio pipeline sent a recording state without call or a known state"
        return data
    if not isinstance(data, dict) or not isinstance(data.get("call"), str) or not isinstance(data.get("figures"), dict):
        return "audio pipeline sent a reply without call and figures"
    return data["call"], data["figures"]


class CallMeters:
    """The pipeline's side, without I/O: one conversation meter per connected Call-ID.

    ``event`` comes from the control thread, ``frame`` from the audio thread: a lock keeps the
    table whole, and ``finish`` (the whole call's figures, tens of ms for an hour) runs on the
    control thread, outside the lock, so the audio thread never waits for it."""

    def __init__(self, make: Callable[[], ConversationMeter] | None = None) -> None:
        if make is None:
            from offhook.audio.analytics import ConversationMeter

            make = ConversationMeter
        self._make = make
        self._lock = threading.Lock()
        self._calls: dict[str, tuple[ConversationMeter, str]] = {}  # Call-ID -> meter, "talk"/"hold"/"consult"
        self.muted = False

    @property
    def calls(self) -> dict[str, str]:
        with self._lock:
            return {call: state for call, (_, state) in self._calls.items()}

    def event(self, call_id: str, event: str) -> dict[str, Any] | None:
        """Apply a call event; at ``end`` the call's figures (None: a Call-ID not metered here)."""
        with self._lock:
            entry = self._calls.get(call_id)
            if event == "connect":
                if entry is None:  # a second connect (a restarted daemon re-announcing) keeps the meter
                    self._calls[call_id] = (self._make(), "talk")
                return None
            if entry is None:
                return None  # not metered from its start (pipeline down then): its figures stay null
            if event == "end":
                del self._calls[call_id]
            else:
                self._calls[call_id] = (entry[0], {"hold": "hold", "consult": "consult", "resume": "talk"}[event])
                return None
        # Without the per-event lists: an hour's hundreds of dead airs would not fit one datagram,
        # and the store and panel keep only the figures.
        return {key: value for key, value in entry[0].finish().as_dict().items() if not isinstance(value, list)}

    def frame(self, mic: Float, cleaned: Float, ref: Float, residual_echo: float) -> None:
        """One 16 kHz frame from the chain (Chain.tap), to every call on the line."""
        with self._lock:
            for meter, state in self._calls.values():
                meter.push(
                    mic, cleaned, ref, residual_echo,
                    connected=True, hold=state == "hold", consult=state == "consult", muted=self.muted,
                )  # fmt: skip


class ControlServer:
    """For `offhook audio run`: the daemon's datagrams on a thread of its own; mute as ever, call
    events to ``meters`` and ``recorders`` (when given), figures back to the sender at ``end``,
    recording states (from ``recorders``' on_reply, see :meth:`send`) to the daemon last heard."""

    def __init__(
        self,
        path: Path,
        on_mute: Callable[[bool], None],
        meters: CallMeters | None = None,
        recorders: CallRecorders | None = None,
    ) -> None:
        path.unlink(missing_ok=True)
        self._sock = sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(0.2)
        self._stop = threading.Event()
        self._on_mute = on_mute
        self.meters = meters
        self.recorders = recorders
        self._peer: Any = None  # the daemon's address, from its last datagram
        threading.Thread(target=self._serve, name="offhook-audio-control", daemon=True).start()

    def send(self, reply: dict[str, Any]) -> None:
        """A reply to the daemon last heard from (any thread: a writer's failure comes unasked)."""
        peer = self._peer
        if not peer:
            log.warning("audio control: no daemon to tell: %s", reply)
            return
        try:
            self._sock.sendto(json.dumps(reply).encode(), peer)
        except OSError as exc:  # the daemon went away: its next run has null figures for the call
            log.warning("audio control: reply not delivered: %s", exc)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                message, sender = self._sock.recvfrom(MAX_DATAGRAM)
            except (TimeoutError, OSError):
                continue
            if message in (b"mute", b"unmute"):
                self._on_mute(message == b"mute")
                if self.meters is not None:
                    self.meters.muted = message == b"mute"
                continue
            if sender:
                self._peer = sender
            reply = self.handle(message)
            if reply is not None and sender:
                try:
                    self._sock.sendto(json.dumps(reply).encode(), sender)
                except OSError as exc:  # the daemon went away: its next run has null figures for the call
                    log.warning("audio control: figures not delivered: %s", exc)

    def handle(self, message: bytes) -> dict[str, Any] | None:
        """What a call event or a recording pause does, and what goes back (None: nothing; the
        recording states go through ``recorders``' on_reply)."""
        try:
            call_id, kind, value = parse_message(message)
        except ValueError as exc:
            log.warning("audio control: refused: %s", exc)
            return {"error": str(exc)}
        if kind == "record":
            if self.recorders is None:
                return {"call": call_id, "recording": "off"}
            self.recorders.pause(call_id, value == "pause")
            return None
        if self.recorders is not None:
            try:
                self.recorders.event(call_id, value)
            except Exception as exc:  # never let a recording stop the meters or the channel
                log.exception("audio control: recording %s %s", call_id, value)
                return {
                    "call": call_id,
                    "recording": "failed",
                    "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                }
        if self.meters is None:
            return None
        figures = self.meters.event(call_id, value)
        return None if figures is None else {"call": call_id, "figures": figures}

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


class AudioChannel:
    """The daemon's end (no numpy): sends call events from a socket of its own, so the pipeline
    can answer there, and reads the figures it returns. A restarted daemon binds the same path,
    so figures for a call that outlived the old run still arrive."""

    def __init__(self, path: Path | None = None, pipeline: Path | None = None) -> None:
        self.path = path or daemon_socket_path()
        self.pipeline = pipeline or control_socket_path()
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self._sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, call_id: str, event: str) -> None:
        """A call event; OSError when no pipeline runs (the call's figures will be null)."""
        self._sock.sendto(call_event(call_id, event), str(self.pipeline))

    def record(self, call_id: str, paused: bool) -> None:
        """The agent pauses or resumes the call's recording; OSError when no pipeline runs."""
        self._sock.sendto(record_request(call_id, paused), str(self.pipeline))

    def mute(self, muted: bool) -> None:
        self._sock.sendto(b"mute" if muted else b"unmute", str(self.pipeline))

    def receive(self) -> list[Reply]:
        """Every reply waiting: (Call-ID, figures), a recording state (dict), or a one-line error."""
        replies: list[Reply] = []
        while True:
            try:
                message = self._sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return replies
            replies.append(parse_reply(message))

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)
