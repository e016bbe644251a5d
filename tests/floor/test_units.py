"""The floor's sans-IO parts: the wire schema, the desk feed, the outbox cursor, the store's outbox and
purge, `offhook central init`, and the [floor] config section."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from offhook import config
from offhook.cli import main
from offhook.floor import broker
from offhook.floor import schema as S
from offhook.floor.client import DeskFeed, Outbox, status_of
from offhook.metrics.store import CallRecorder


def test_topics_and_payloads_are_checked() -> None:
    assert S.parse_topic("offhook/v1/hq/desk-01/state") == S.Topic("hq", "desk-01", "state")
    for bad in ("offhook/v2/hq/d/state", "offhook/v1/hq/d/other", "offhook/v1/h q/d/state", "x/v1/hq/d/state"):
        with pytest.raises(S.SchemaError):
            S.parse_topic(bad)
    ack = S.encode({"store": "abc", "upto": 3})
    assert S.decode(S.ACK, ack) == {"v": 1, "store": "abc", "upto": 3}
    for payload, why in (
        (b"{", "not JSON"),
        (b"[]", "not an object"),
        (json.dumps({"v": 2, "store": "abc", "upto": 3}).encode(), "version"),
        (json.dumps({"v": 1, "store": "abc", "upto": True}).encode(), "upto"),
        (json.dumps({"v": 1, "store": "abc", "upto": "NaN"}).encode(), "upto"),
        (b'{"v": 1, "store": "abc", "upto": NaN}', "not JSON"),
        (b" " * 2000, "oversize"),
    ):
        with pytest.raises(S.SchemaError, match=why):
            S.decode(S.ACK, payload)


def test_a_record_with_a_plain_number_or_out_of_order_is_refused() -> None:
    record = {key: None for key in S.RECORD_FIELDS} | {"seq": 1, "call_id": "c", "agent": "a", "tz": "UTC"}
    record |= {"direction": "inbound", "outcome": "missed", "ring_wall": 1.0, "local_day": "2026-03-10"}
    record |= {"local_start": "2026-03-10T09:00:00+01:00"}  # as the desk writes them (schema checks both)
    record |= {"holds": 0, "long_holds": 0}
    good = {"v": 1, "store": "s", "after": 0, "records": [record]}
    assert S.decode(S.RECORDS, json.dumps(good).encode())["records"][0]["seq"] == 1
    with pytest.raises(S.SchemaError, match="keyed hash"):
        S.decode(S.RECORDS, json.dumps(good | {"records": [record | {"number": "+4930123"}]}).encode())
    with pytest.raises(S.SchemaError, match="increasing"):
        S.decode(S.RECORDS, json.dumps(good | {"after": 1}).encode())


def test_the_live_status_of_a_desk() -> None:
    assert status_of({"agent": "available", "calls": []}) == ("available", None)
    assert status_of({"agent": "available", "calls": [{"state": "ringing"}]}) == ("ringing", None)
    assert status_of({"agent": "on_call", "calls": [{"state": "held", "held_s": 3.0}]}) == ("on_hold", 3.0)
    assert status_of({"agent": "on_call", "calls": [{"state": "held"}, {"state": "active"}]}) == ("on_call", None)
    assert status_of({"agent": "wrap_up", "calls": []}) == ("wrap_up", None)
    assert status_of({"agent": "break", "calls": []}) == ("break", None)
    assert status_of({"agent": "offline", "calls": []}) == ("offline", None)


def test_the_feed_numbers_states_and_alerts_once_per_hold() -> None:
    now = [1000.0]
    feed = DeskFeed("hq", "desk-01", "blue", run=7, wall=lambda: now[0])
    first = feed.event({"event": "state", "agent": "available", "call": "idle", "calls": []})
    assert feed.event({"event": "state", "agent": "available", "call": "idle", "calls": []}) == []  # unchanged
    now[0] += 5
    held = {"event": "state", "agent": "on_call", "call": "held", "calls": [{"state": "held", "held_s": 2.0}]}
    second = feed.event(held)
    bodies = [S.decode(S.STATE, p.payload) for p in first + second]
    assert [(b["run"], b["seq"], b["status"]) for b in bodies] == [(7, 1, "available"), (7, 2, "on_hold")]
    assert bodies[1]["hold_since"] == 1003.0 and all(p.retain for p in first + second)
    alerts = feed.event({"event": "hold_reminder", "call": "c1", "held_s": 120})
    assert feed.event({"event": "hold_reminder", "call": "c1", "held_s": 240}) == []
    alerts += feed.event({"event": "missed_call", "call": "c2", "peer": "+4930"})
    kinds = [S.decode(S.ALERTS, a.payload) for a in alerts]
    assert [(a["kind"], a["call"]) for a in kinds] == [("long_hold", "c1"), ("missed_call", "c2")]
    assert all(b"+4930" not in a.payload for a in alerts)
    unit = {"serial": "0ff0", "board": "pico", "firmware": "1.2.0", "slot": "a", "health": "confirmed"}
    plugged = feed.event({"event": "unit", "connected": True}, unit | {"transport": "hid"})
    lost = feed.event({"event": "unit", "connected": False})
    inventory = S.decode(S.INVENTORY, lost[0].payload)
    assert inventory["serial"] == "0ff0" and inventory["transport"] == "hid" and inventory["connected"] is False
    assert S.decode(S.INVENTORY, plugged[0].payload)["connected"] is True
    assert S.decode(S.ALERTS, lost[1].payload)["kind"] == "unit_lost"
    # A session's last will sorts after its own online, before the next session's.
    order = [
        S.decode(S.PRESENCE, feed.presence(online, s).payload)["seq"]
        for s, online in ((1, True), (1, False), (2, True))
    ]
    assert order == sorted(order)


def test_the_state_names_the_agent_signed_in_and_a_bad_name_is_refused() -> None:
    idle = {"event": "state", "agent": "available", "call": "idle", "calls": []}
    [named] = DeskFeed("hq", "desk-01", "blue", run=7, agent="bob").event(idle)
    assert S.decode(S.STATE, named.payload)["name"] == "bob"
    [anonymous] = DeskFeed("hq", "desk-01", "blue", run=7).event(idle)
    body = S.decode(S.STATE, anonymous.payload)
    assert "name" not in body
    for bad in (7, "x" * 300, "a\x00b"):
        with pytest.raises(S.SchemaError, match="name"):
            S.decode(S.STATE, S.encode({**body, "name": bad}))


def test_the_outbox_advances_only_on_acks_and_resends_after_a_timeout() -> None:
    box = Outbox("store-a", acked=4, ack_timeout_s=2.0)
    assert (box.sent_upto, box.in_flight) == (4, False)
    box.sent(9, now=10.0)
    assert box.in_flight and not box.check(11.0)
    assert not box.on_ack("store-b", 9) and box.acked == 4  # another store's ack
    assert box.on_ack("store-a", 6) and box.in_flight  # part of it
    assert box.check(12.0) and (box.sent_upto, box.in_flight) == (6, False)  # resend from the cursor
    box.sent(9, now=13.0)
    assert box.on_ack("store-a", 9) and not box.in_flight
    assert not box.on_ack("store-a", 5) and box.acked == 9  # a late, older ack never moves it back


def _call(recorder: CallRecorder, call_id: str, wall: float, *, missed: bool = False) -> None:
    recorder.ringing(call_id, agent="ann", direction="inbound", number="+4930123", tz="UTC", wall=wall, mono=1.0)
    if missed:
        recorder.missed(call_id, wall=wall + 1, mono=2.0)
        return
    recorder.answered(call_id, wall=wall + 1, mono=2.0)
    recorder.hung_up(call_id, wall=wall + 2, mono=3.0)
    recorder.wrap_up_ended(call_id, wall=wall + 3, mono=4.0)


def test_the_store_numbers_completed_calls_and_renumbers_a_reopened_one(tmp_path: Path) -> None:
    with CallRecorder(tmp_path / "m.sqlite3") as recorder:
        assert recorder.floor_acked() == -1
        _call(recorder, "a", 1000.0)
        _call(recorder, "b", 1000.0, missed=True)
        recorder.ringing("open", agent="ann", direction="inbound", number=None, tz="UTC", wall=1000.0, mono=1.0)
        assert recorder.floor_enable() == 0
        rows = recorder.floor_pending(0, 10)
        assert [(r["floor_seq"], r["call_id"], r["outcome"]) for r in rows] == [
            (1, "a", "answered"),
            (2, "b", "missed"),
        ]
        assert recorder.floor_pending(2, 10) == []
        assert recorder.floor_ack(2) and not recorder.floor_ack(1) and recorder.floor_acked() == 2
        # The missed call is answered after all: it reopens, and once completed again it is sent again.
        recorder.answered("b", wall=1002.0, mono=3.0)
        assert recorder.floor_pending(2, 10) == []
        recorder.hung_up("b", wall=1003.0, mono=4.0)
        recorder.wrap_up_ended("b", wall=1004.0, mono=5.0)
        again = recorder.floor_pending(2, 10)
        assert [(r["floor_seq"], r["call_id"], r["outcome"]) for r in again] == [(3, "b", "answered")]


def test_the_retention_purge_keeps_what_the_floor_has_not_acknowledged(tmp_path: Path) -> None:
    old = time.time() - 400 * 86400
    with CallRecorder(tmp_path / "m.sqlite3") as recorder:
        for name in ("a", "b", "c"):
            _call(recorder, name, old)
        recorder.floor_enable()
        recorder.floor_pending(0, 10)  # numbered 1..3, none acknowledged
        _call(recorder, "d", old)  # completed, not even numbered yet
        assert recorder.purge(older_than_days=365) == 0
        recorder.floor_ack(2)
        assert recorder.purge(older_than_days=365) == 2
        left = [row[0] for row in recorder.conn.execute("SELECT call_id FROM calls ORDER BY call_id")]
        assert left == ["c", "d"]
    with CallRecorder(tmp_path / "no-floor.sqlite3") as recorder:  # no floor set up: the purge as before
        _call(recorder, "a", old)
        assert recorder.purge(older_than_days=365) == 1


def test_central_init_writes_the_broker_files_and_keeps_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "floor"
    assert main(["central", "init", str(target), "--desk", "hq/desk-01", "--desk", "hq/desk-02"]) == 0
    password = (target / "secrets" / "desk-01.password").read_text()
    assert (target / "secrets" / "desk-01.password").stat().st_mode & 0o777 == 0o600
    acl = (target / "acl").read_text()
    assert "user desk-01\ntopic write offhook/v1/hq/desk-01/presence" in acl
    assert "topic read offhook/v1/hq/desk-01/ack" in acl and "topic read offhook/v1/#" in acl
    assert "allow_anonymous false" in (target / "mosquitto.conf").read_text()
    ca_before = (target / "ca.pem").read_bytes()
    assert main(["central", "init", str(target), "--desk", "branch/desk-03"]) == 0
    assert (target / "secrets" / "desk-01.password").read_text() == password
    assert (target / "ca.pem").read_bytes() == ca_before
    assert "user desk-03\ntopic write offhook/v1/branch/desk-03/presence" in (target / "acl").read_text()
    passwords = (target / "passwords").read_text()
    assert password.strip() not in passwords and "desk-02:$7$101$" in passwords
    assert main(["central", "init", str(target), "--desk", "other/desk-01"]) == 2  # a name is one desk
    assert main(["central", "init", str(target), "--desk", "hq/desk+1"]) == 2
    out = capsys.readouterr()
    assert password.strip() not in out.out + out.err


def test_the_floor_config_section(tmp_path: Path) -> None:
    secret = tmp_path / "desk.password"
    secret.write_text("x")
    good = {
        "broker": "mqtts://floor.example.com:8883",
        "username": "desk-01",
        "site": "hq",
        "password_file": str(secret),
    }
    assert config.validate({"floor": good})["floor"]["team"] == ""
    assert config.validate({})["floor"]["broker"] == ""  # no floor: the daemon as before
    for change, why in (
        ({"broker": "mqtt://floor.example.com:1883"}, "TLS"),
        ({"broker": "http://x"}, "mqtts://"),
        ({"username": "desk/01"}, "letters"),
        ({"site": ""}, "floor.site is needed"),
        ({"password_file": ""}, "password_file or floor.cert_file"),
        ({"password_file": str(tmp_path / "missing")}, "not a file"),
        ({"team": "a+b"}, "letters"),
    ):
        with pytest.raises(config.ConfigError, match=why):
            config.validate({"floor": good | change})
    assert config.validate({"floor": good | {"broker": "mqtt://127.0.0.1:1883"}})  # on this PC, plain is allowed
    assert broker.Desk.parse("hq/desk-01") == broker.Desk("hq", "desk-01")


def test_refusals_are_counted_always_and_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture) -> None:
    from offhook.floor.central import LOG_LINES_PER_MINUTE, Ingest

    now = [0.0]
    ingest = Ingest(clock=lambda: now[0])
    for _ in range(LOG_LINES_PER_MINUTE + 30):
        ingest.message("offhook/v1/hq/desk-01/state", b"{nope")
    now[0] = 61.0
    ingest.message("offhook/v1/hq/desk-01/state", b"{nope")
    ingest.message("elsewhere/+4930123", b"{}")
    assert ingest.counters["malformed"] == LOG_LINES_PER_MINUTE + 32  # a topic not of the floor is malformed too
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == LOG_LINES_PER_MINUTE + 2 and "30 more not logged" in lines[-2]
    assert "+4930123" not in caplog.text
