"""Call records on the floor carry their analytics as an optional object (issue 25), checked like the rest."""

from __future__ import annotations

import json
from typing import Any

import pytest

from offhook.floor import schema as S


def body(**extra: Any) -> bytes:
    record = {key: None for key in S.RECORD_FIELDS} | {"seq": 1, "call_id": "c", "agent": "a", "tz": "UTC"}
    record |= {"direction": "inbound", "outcome": "answered", "ring_wall": 1.0, "local_start": "x", "local_day": "x"}
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
