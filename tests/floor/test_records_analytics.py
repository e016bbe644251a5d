"""Call records on the floor carry their analytics as an optional object (issue 25), checked like the rest,
and central keeps them in PostgreSQL (migration 6)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import psycopg
import pytest

from offhook.floor import pgstore
from offhook.floor import schema as S
from offhook.floor.central import Ingest


def body(**extra: Any) -> bytes:
    record = {key: None for key in S.RECORD_FIELDS} | {"seq": 1, "call_id": "c", "agent": "a", "tz": "UTC"}
    record |= {"direction": "inbound", "outcome": "answered", "ring_wall": 1.0, "local_day": "2026-10-24",
               "local_start": "2026-10-24T08:00:00+00:00"}  # fmt: skip
    record |= {"holds": 0, "long_holds": 0, **extra}
    return json.dumps({"v": 1, "store": "s", "after": 0, "records": [record]}).encode()


def test_analytics_absent_null_or_figures_pass() -> None:
    for extra in ({}, {"analytics": None}, {"analytics": {"agent_share": 0.4, "response_median_s": None,
                                                          "quality": {"noise_floor_dbfs": -60.0}}}):  # fmt: skip
        assert S.decode(S.RECORDS, body(**extra))["records"][0]["seq"] == 1


def test_bad_analytics_are_refused_in_one_line() -> None:
    for bad in ("0.4", [1], {"agent_share": "high"}, {"holds": True}, {"quality": {"quality": {}}},
                {"quality": None} | {f"k{i}": 1 for i in range(70)}):  # fmt: skip
        with pytest.raises(S.SchemaError, match=r"^malformed records message \(analytics\)$"):
            S.decode(S.RECORDS, body(analytics=bad))


FIGURES = {"connected_s": 61.5, "agent_share": 0.42, "overtalk_count": 2, "response_median_s": None,
           "quality": {"noise_floor_dbfs": -61.25, "clipping_pct": 0.0}}  # fmt: skip


def message(*records: dict[str, Any], store: str = "store-a", after: int = 0) -> bytes:
    return json.dumps({"v": 1, "store": store, "after": after, "records": list(records)}).encode()


def record(seq: int, call: str, **extra: Any) -> dict[str, Any]:
    return json.loads(body(seq=seq, call_id=call, number="h1:abc", **extra))["records"][0]


def ingest_and_write(db: str, *payloads: bytes, ingest: Any = None) -> Any:
    ingest = ingest or Ingest()
    for payload in payloads:
        ingest.message("offhook/v1/site-1/desk-01/records", payload)

    async def go() -> Any:
        conn = await pgstore.connect(db)
        try:
            await pgstore.migrate(conn)
            return await pgstore.write(conn, ingest.take(), "test")
        finally:
            await conn.close()

    written = asyncio.run(go())
    return ingest, written


def rows(db: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db) as conn:
        return list(conn.execute("SELECT call_id, seq, talk_s, analytics FROM calls ORDER BY call_id").fetchall())


def test_central_keeps_the_analytics_once_and_a_newer_version_replaces_them(db: str) -> None:
    """Real PostgreSQL: figures are stored as sent (jsonb), a call without them has NULL (never zeros), a
    replay changes nothing, and the call re-sent with its figures (a higher seq) replaces the older row."""
    first = message(record(1, "a", analytics=FIGURES), record(2, "b", talk_s=30.0), record(3, "c", analytics=None))
    _, written = ingest_and_write(db, first, first)
    assert written.records == 3 and [a.upto for a in written.acks] == [3]
    assert rows(db) == [("a", 1, None, FIGURES), ("b", 2, 30.0, None), ("c", 3, None, None)]
    ingest_and_write(db, first)  # a replay (the ack was lost): nothing changes
    assert rows(db) == [("a", 1, None, FIGURES), ("b", 2, 30.0, None), ("c", 3, None, None)]
    later = message(record(4, "b", talk_s=30.0, analytics=FIGURES | {"agent_share": 0.5}), after=3)
    ingest_and_write(db, later, first)  # the older version arriving after it does not win
    assert rows(db)[1] == ("b", 4, 30.0, FIGURES | {"agent_share": 0.5})
    with psycopg.connect(db) as conn:
        share = conn.execute("SELECT (analytics ->> 'agent_share')::float8 FROM calls WHERE call_id = 'b'").fetchone()
        noise = conn.execute("SELECT analytics #>> '{quality,noise_floor_dbfs}' FROM calls WHERE call_id = 'a'")
        assert share == (0.5,) and noise.fetchone() == ("-61.25",)
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (pgstore.SCHEMA_VERSION,)


def test_a_malformed_analytics_field_refuses_its_message_whole(db: str, caplog: pytest.LogCaptureFixture) -> None:
    """schema.py's rule: a reader refuses (and counts) a message with a bad field, never a guess. The batch
    with a bad analytics field is refused whole: no record of it is written, the desk's cursor does not move
    (the desk sends it again, so no record is lost or counted twice), and one line says why."""
    good = message(record(1, "a", analytics=FIGURES))
    bad = message(record(2, "b"), record(3, "c", analytics={"agent_share": "+4930123"}), after=1)
    with caplog.at_level(logging.WARNING, logger="offhook.central"):
        ingest, written = ingest_and_write(db, good, bad)
    assert ingest.counters["malformed"] == 1 and ingest.counters["records_received"] == 1
    assert written.records == 1 and [a.upto for a in written.acks] == [1]
    assert rows(db) == [("a", 1, None, FIGURES)]
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert lines == ["central: refused records from site-1/desk-01: malformed records message (analytics)"
                     " (malformed; 1 so far)"]  # fmt: skip
    assert "+4930123" not in caplog.text
    # The desk's next try, fixed (or without figures): each record counted once.
    ingest_and_write(db, message(record(2, "b"), record(3, "c", analytics=None), after=1))
    assert [r[:2] for r in rows(db)] == [("a", 1), ("b", 2), ("c", 3)]


def test_analytics_figures_out_of_range_or_badly_named_are_refused() -> None:
    bad_keys = [{"k" * 65: 1.0}, {"quality": {"x" * 65: 1}}, {"a\u0000": 1}, {"share\n": 1}, {"": 1}]
    huge = [{"agent_share": 1e300}, {"overtalk_count": 10**30}, {"overtalk_count": 10**400},
            {"quality": {"clipping_pct": -(10**400)}}]  # fmt: skip
    for bad in bad_keys + huge:
        with pytest.raises(S.SchemaError, match=r"^malformed records message \(analytics\)$"):
            S.decode(S.RECORDS, body(analytics=bad))
    for bad_json in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):  # not JSON, or not finite
        payload = body(analytics=0).replace(b'"analytics": 0', b'"analytics": {"agent_share": ' + bad_json + b"}")
        assert b"agent_share" in payload
        with pytest.raises(S.SchemaError, match=r"^malformed records message \((not JSON|analytics)\)$"):
            S.decode(S.RECORDS, payload)
