"""The floor's wire format: topics and JSON payloads, version 1 (docs/floor.md is the reference).

Topics are ``offhook/v1/<site>/<desk>/<kind>``; ``desk`` is the desk's broker username, so the
broker's ACL (see broker.py) lets a desk publish only under its own name. Every payload is one
JSON object carrying ``"v": 1``. A reader refuses (and counts) a payload that is too large, not
JSON, of another version, or missing a field: never a guess, never a crash.

Why JSON and not Sparkplug B: the messages are few and small (a state change, a batch of call
records), IT reads them with mosquitto_sub, and the exactly-once contract (a per-desk record
cursor acknowledged by central) is ours to define anyway; Sparkplug's birth/death certificates
and metric aliases would add a protobuf dependency without carrying that contract.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

VERSION = 1
ROOT = "offhook"
PREFIX = f"{ROOT}/v{VERSION}"
SHARE_GROUP = "offhook-central"  # MQTT 5 shared subscription group of every `offhook central`

# What a desk publishes (retained: a reader that connects later gets the latest at once).
PRESENCE, INVENTORY, STATE, RECORDS, ALERTS = "presence", "inventory", "state", "records", "alerts"
# What central publishes for one desk (retained): the highest record it has committed.
ACK = "ack"
# Floor-wide settings: central's resolved policy for one desk (retained, so a desk offline during a
# change gets it on reconnect), and the desk's effective settings and their version (retained).
POLICY, SETTINGS = "policy", "settings"
# Staged firmware rollouts (rollouts.py): central's update for one desk (retained: the bundle to
# fetch, or a cancel) and the desk's last phase of it (retained).
UPDATE, UPDATE_STATUS = "update", "update_status"
DESK_KINDS = (PRESENCE, INVENTORY, STATE, RECORDS, ALERTS, SETTINGS, UPDATE_STATUS)
CENTRAL_KINDS = (ACK, POLICY, UPDATE)
RETAINED = frozenset({PRESENCE, INVENTORY, STATE, ACK, POLICY, SETTINGS, UPDATE, UPDATE_STATUS})

MAX_PAYLOAD = {
    PRESENCE: 2048,
    INVENTORY: 4096,
    STATE: 4096,
    ALERTS: 4096,
    ACK: 1024,
    RECORDS: 512 * 1024,
    POLICY: 16384,
    SETTINGS: 16384,
    UPDATE: 2048,
    UPDATE_STATUS: 2048,
}
MAX_BATCH = 200  # records per RECORDS message: about 100 KB, far below MAX_PAYLOAD

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # site, desk and team names: safe in topics and ACLs

# Live status, derived from the desk's snapshot (most specific first).
STATUSES = ("offline", "available", "ringing", "on_call", "on_hold", "wrap_up", "break")
ALERT_KINDS = ("long_hold", "missed_call", "unit_lost")
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "seq": (int,),
    "call_id": (str,),
    "agent": (str,),
    "tz": (str,),
    "direction": (str,),
    "number": (str, type(None)),  # a keyed hash ("h1:..."), never a number
    "outcome": (str,),
    "ring_wall": (float, int),
    "answer_wall": (float, int, type(None)),
    "end_wall": (float, int, type(None)),
    "wrap_wall": (float, int, type(None)),
    "local_start": (str,),
    "local_day": (str,),
    "ring_s": (float, int, type(None)),
    "talk_s": (float, int, type(None)),
    "hold_s": (float, int, type(None)),
    "wrap_s": (float, int, type(None)),
    "holds": (int,),
    "long_holds": (int,),
    "ended_by": (str, type(None)),
}
# Optional (a desk before metrics store version 4 leaves it out): the call's conversation analytics,
# an object of figures (numbers or null, "quality" one level down) or null when no pipeline metered it.
ANALYTICS_MAX_KEYS = 64
FIGURE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")  # a figure's name (CallFigures' field names)
ANALYTICS_MAX_VALUE = 1e9  # no figure comes near (seconds of a call, dB, counts): PostgreSQL reads each as float8
# What central's columns hold (pgstore): a record outside them would fail the whole batch's write.
MAX_INT4, MAX_INT8 = 2**31 - 1, 2**63 - 1
LOCAL_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# The desk's isoformat(timespec="seconds"), with its offset (seconds in it only in old zones' history).
LOCAL_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[+-][0-9]{2}:[0-9]{2}(:[0-9]{2})?")


class SchemaError(ValueError):
    """A message that is not version-1 offhook floor data; the text is one line, with no payload in it."""


@dataclass(frozen=True)
class Topic:
    site: str
    desk: str
    kind: str

    def __str__(self) -> str:
        return f"{PREFIX}/{self.site}/{self.desk}/{self.kind}"


def topic(site: str, desk: str, kind: str) -> str:
    return str(Topic(site, desk, kind))


def parse_topic(text: str) -> Topic:
    parts = text.split("/")
    if len(parts) != 5 or parts[0] != ROOT:
        raise SchemaError("not an offhook floor topic")
    if parts[1] != f"v{VERSION}":
        raise SchemaError(f"unknown topic version {parts[1][:8]!r}")
    site, desk, kind = parts[2:]
    if not NAME.match(site) or not NAME.match(desk):
        raise SchemaError("bad site or desk name in topic")
    if kind not in (*DESK_KINDS, *CENTRAL_KINDS):
        raise SchemaError(f"unknown message kind {kind[:16]!r}")
    return Topic(site, desk, kind)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, **body}, separators=(",", ":"), allow_nan=False).encode()


def decode(kind: str, payload: bytes) -> dict[str, Any]:
    """The checked body of a ``kind`` message; SchemaError says why not."""
    if len(payload) > MAX_PAYLOAD[kind]:
        raise SchemaError(f"oversize {kind} message ({len(payload)} bytes, limit {MAX_PAYLOAD[kind]})")
    try:
        body = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError):
        raise SchemaError(f"malformed {kind} message (not JSON)") from None
    if not isinstance(body, dict):
        raise SchemaError(f"malformed {kind} message (not an object)")
    if body.get("v") != VERSION:
        raise SchemaError(f"unknown schema version in {kind} message")
    _CHECKS[kind](body)
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _need(body: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if isinstance(value, bool) and bool not in kinds:
        raise SchemaError(f"malformed {what} message ({key})")
    if not isinstance(value, kinds) or (isinstance(value, float) and not math.isfinite(value)):
        raise SchemaError(f"malformed {what} message ({key})")
    if isinstance(value, str) and len(value) > 256:
        raise SchemaError(f"malformed {what} message ({key} too long)")
    if isinstance(value, str) and "\x00" in value:  # PostgreSQL's text cannot hold it
        raise SchemaError(f"malformed {what} message ({key})")
    if isinstance(value, int) and not -MAX_INT8 <= value <= MAX_INT8:  # central's bigint columns
        raise SchemaError(f"malformed {what} message ({key})")
    return value


_OPT_STR = (str, type(None))
_NUM = (int, float)
_OPT_NUM = (int, float, type(None))


def _check_presence(body: dict[str, Any]) -> None:
    _need(body, "run", (int,), PRESENCE)
    _need(body, "seq", (int,), PRESENCE)
    _need(body, "online", (bool,), PRESENCE)
    _need(body, "ts", _NUM, PRESENCE)


def _check_inventory(body: dict[str, Any]) -> None:
    _need(body, "run", (int,), INVENTORY)
    _need(body, "seq", (int,), INVENTORY)
    _need(body, "connected", (bool,), INVENTORY)
    for key in ("serial", "board", "firmware", "slot", "health", "transport"):
        _need(body, key, (str,), INVENTORY)
    _need(body, "ts", _NUM, INVENTORY)


def _check_state(body: dict[str, Any]) -> None:
    _need(body, "run", (int,), STATE)
    _need(body, "seq", (int,), STATE)
    if _need(body, "status", (str,), STATE) not in STATUSES:
        raise SchemaError("malformed state message (status)")
    _need(body, "agent", (str,), STATE)
    _need(body, "call", (str,), STATE)
    _need(body, "since", _NUM, STATE)
    _need(body, "hold_since", _OPT_NUM, STATE)
    if not 0 <= _need(body, "calls", (int,), STATE) <= MAX_INT4:
        raise SchemaError("malformed state message (calls)")
    _need(body, "ts", _NUM, STATE)
    if "name" in body:  # the agent signed in at the desk (optional: older desks do not send it)
        _need(body, "name", (str,), STATE)


def _check_alert(body: dict[str, Any]) -> None:
    _need(body, "run", (int,), ALERTS)
    _need(body, "seq", (int,), ALERTS)
    if _need(body, "kind", (str,), ALERTS) not in ALERT_KINDS:
        raise SchemaError("malformed alerts message (kind)")
    _need(body, "call", _OPT_STR, ALERTS)
    _need(body, "ts", _NUM, ALERTS)


def _check_records(body: dict[str, Any]) -> None:
    _need(body, "store", (str,), RECORDS)
    after = _need(body, "after", (int,), RECORDS)
    records = body.get("records")
    if not isinstance(records, list) or not 0 < len(records) <= MAX_BATCH:
        raise SchemaError("malformed records message (records)")
    last = after
    for record in records:
        if not isinstance(record, dict):
            raise SchemaError("malformed records message (record)")
        for key, kinds in RECORD_FIELDS.items():
            _need(record, key, kinds, RECORDS)
        _check_analytics(record.get("analytics"))
        if record["seq"] <= last:
            raise SchemaError("malformed records message (seq not increasing)")
        number = record["number"]
        if number is not None and not number.startswith("h1:"):
            raise SchemaError("records message carries a customer number that is not a keyed hash")
        _check_columns(record)
        last = record["seq"]


def _check_columns(record: dict[str, Any]) -> None:
    """What the types alone let through and central's columns would not take (pgstore's calls)."""
    if not 0 < record["seq"] <= MAX_INT8:
        raise SchemaError("malformed records message (seq)")
    for key in ("holds", "long_holds"):
        if not 0 <= record[key] <= MAX_INT4:
            raise SchemaError(f"malformed records message ({key})")
    day = record["local_day"]
    try:
        valid_day = bool(LOCAL_DAY.fullmatch(day)) and date.fromisoformat(day) is not None
    except ValueError:
        valid_day = False
    if not valid_day:
        raise SchemaError("malformed records message (local_day)")
    if not LOCAL_START.fullmatch(record["local_start"]):
        raise SchemaError("malformed records message (local_start)")


def _check_analytics(figures: Any, depth: int = 0) -> None:
    if figures is None and depth == 0:
        return
    if not isinstance(figures, dict) or len(figures) > ANALYTICS_MAX_KEYS:
        raise SchemaError("malformed records message (analytics)")
    for key, value in figures.items():
        if not FIGURE_NAME.fullmatch(key):
            raise SchemaError("malformed records message (analytics)")
        if key == "quality" and depth == 0:
            _check_analytics(value, 1)
        elif value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not abs(value) <= ANALYTICS_MAX_VALUE  # exact for any int (no float conversion), False for NaN
        ):
            raise SchemaError("malformed records message (analytics)")


def _check_ack(body: dict[str, Any]) -> None:
    _need(body, "store", (str,), ACK)
    _need(body, "upto", (int,), ACK)


def _check_policy(body: dict[str, Any]) -> None:
    """The envelope only: the desk checks the policy whole with settings.check_policy."""
    _need(body, "version", (int,), POLICY)
    for key in ("layers", "locks"):
        if not isinstance(body.get(key), dict):
            raise SchemaError(f"malformed policy message ({key})")


def _check_settings(body: dict[str, Any]) -> None:
    _need(body, "version", (int,), SETTINGS)
    _need(body, "pending", (int, type(None)), SETTINGS)
    _need(body, "refused", _OPT_STR, SETTINGS)
    effective = body.get("effective")
    if not isinstance(effective, dict):
        raise SchemaError("malformed settings message (effective)")
    for chosen in effective.values():
        if not isinstance(chosen, dict) or not isinstance(chosen.get("source"), str) or "value" not in chosen:
            raise SchemaError("malformed settings message (effective value)")


SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The phases a desk reports (the daemon's update relay, daemon/updates.py).
UPDATE_PHASES = (
    "queued",
    "downloading",
    "verified",
    "receiving",
    "rebooting",
    "confirmed",
    "up to date",
    "failed",
    "rolled back",
)


def _check_update(body: dict[str, Any]) -> None:
    """A bundle to fetch (rollout, sha256, version, board, url ``/bundles/<sha256>``; ``prefetch``:
    only the download is due yet) or a cancel."""
    rollout = _need(body, "rollout", (str,), UPDATE)
    if not 0 < len(rollout) <= 128:
        raise SchemaError("malformed update message (rollout)")
    if "cancel" in body:
        if body["cancel"] is not True or set(body) != {"v", "rollout", "cancel"}:
            raise SchemaError("malformed update message (cancel)")
        return
    sha256 = _need(body, "sha256", (str,), UPDATE)
    if not SHA256.match(sha256):
        raise SchemaError("malformed update message (sha256)")
    for key in ("version", "board"):
        _need(body, key, (str,), UPDATE)
    if body.get("url") != f"/bundles/{sha256}":
        raise SchemaError("malformed update message (url)")
    if "prefetch" in body and body["prefetch"] is not True:
        raise SchemaError("malformed update message (prefetch)")
    if set(body) - {"v", "rollout", "sha256", "version", "board", "url", "prefetch"}:
        raise SchemaError("malformed update message (unknown field)")


def _check_update_status(body: dict[str, Any]) -> None:
    rollout = _need(body, "rollout", (str,), UPDATE_STATUS)
    if not 0 < len(rollout) <= 128:
        raise SchemaError("malformed update_status message (rollout)")
    if _need(body, "phase", (str,), UPDATE_STATUS) not in UPDATE_PHASES:
        raise SchemaError("malformed update_status message (phase)")
    percent = _need(body, "percent", (int,), UPDATE_STATUS)
    if not 0 <= percent <= 100:
        raise SchemaError("malformed update_status message (percent)")
    _need(body, "reason", (str,), UPDATE_STATUS)
    if len(_need(body, "tz", (str,), UPDATE_STATUS)) > 64:
        raise SchemaError("malformed update_status message (tz)")


_CHECKS = {
    PRESENCE: _check_presence,
    INVENTORY: _check_inventory,
    STATE: _check_state,
    ALERTS: _check_alert,
    RECORDS: _check_records,
    ACK: _check_ack,
    POLICY: _check_policy,
    SETTINGS: _check_settings,
    UPDATE: _check_update,
    UPDATE_STATUS: _check_update_status,
}
