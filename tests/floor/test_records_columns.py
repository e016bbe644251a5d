"""A message central's columns could not hold is refused at the schema, not by PostgreSQL.

Types alone let through an integer past bigint or integer, a day that is no date, a local start
the reports cannot read, or a NUL in a text: PostgreSQL then failed the whole batch's write and
central's writer stopped (a traceback). Each is now a one-line refusal, counted, with nothing
written, and central goes on writing the next desk's records (real PostgreSQL).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
import pytest

from offhook.floor import schema as S
from offhook.floor.central import Ingest
from tests.floor.test_records_analytics import body, ingest_and_write, message, record

BAD: list[tuple[dict[str, Any], str]] = [
    ({"seq": 2**63}, "seq"),
    ({"holds": 2**31}, "holds"),
    ({"long_holds": -1}, "long_holds"),
    ({"local_day": "2026-02-30"}, "local_day"),
    ({"local_day": "x"}, "local_day"),
    ({"local_day": "2026-10-24\n"}, "local_day"),
    ({"local_start": "2026-10-24 08:00"}, "local_start"),
    ({"agent": "ann\u0000"}, "agent"),
]


@pytest.mark.parametrize(("extra", "field"), BAD)
def test_a_value_no_column_holds_is_refused_in_one_line(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(S.SchemaError, match=rf"^malformed records message \({field}\)$"):
        S.decode(S.RECORDS, body(**extra))


def test_central_refuses_them_and_writes_the_rest(db: str, caplog: pytest.LogCaptureFixture) -> None:
    good = message(record(1, "a"), store="store-good")
    bad = []
    for extra, _ in BAD:
        fields = dict(extra)
        bad.append(message(record(fields.pop("seq", 1), "b", **fields), store="store-bad"))
    with caplog.at_level(logging.WARNING, logger="offhook.central"):
        ingest, written = ingest_and_write(db, *bad, good)
    assert ingest.counters["malformed"] == len(BAD) and written.records == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT store_id, call_id FROM calls").fetchall() == [("store-good", "a")]
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == len(BAD) and all("\n" not in line and "ann" not in line for line in refusals)


def test_live_messages_past_central_columns_are_refused_and_central_writes_on(db: str) -> None:
    """The same for the live side: a run or seq past bigint (presence, state, inventory, alerts), a
    state's call count past integer."""
    state = {"v": 1, "run": 1, "seq": 1, "status": "available", "agent": "a", "call": "", "since": 1.0,
             "hold_since": None, "calls": 0, "ts": 1.0}  # fmt: skip
    presence = {"v": 1, "run": 1, "seq": 1, "online": True, "ts": 1.0}
    alert = {"v": 1, "run": 1, "seq": 1, "kind": "missed_call", "call": None, "ts": 1.0}
    for kind, good, bad in (
        (S.STATE, state, {"run": 2**63}),
        (S.STATE, state, {"calls": 2**31}),
        (S.PRESENCE, presence, {"seq": -(2**63) - 1}),
        (S.ALERTS, alert, {"run": 10**40}),
    ):
        field = next(iter(bad))
        with pytest.raises(S.SchemaError, match=rf"^malformed {kind} message \({field}\)$"):
            S.decode(kind, json.dumps(good | bad).encode())
        assert S.decode(kind, json.dumps(good).encode())["run"] == 1
    ingest = Ingest()
    ingest.message("offhook/v1/site-1/desk-01/state", json.dumps(state | {"run": 2**63}).encode())
    ingest.message("offhook/v1/site-1/desk-02/state", json.dumps(state).encode())
    ingest_and_write(db, ingest=ingest)
    assert ingest.counters["malformed"] == 1
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT desk, run FROM live_state").fetchall() == [("desk-02", 1)]
