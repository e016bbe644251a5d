"""Floor-wide settings: layers, locks, checks, and a daemon that applies them only when idle."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from offhook import config
from offhook import linkproto as L
from offhook.daemon.service import Daemon
from offhook.settings import Policy, PolicyError, apply, check_layer, check_policy, effective
from offhook.softphone.base import EventKind, SoftphoneEvent
from offhook.softphone.web import WebSoftphone


def test_the_most_specific_layer_wins_and_says_where_it_came_from() -> None:
    policy = check_policy(
        {
            "version": 3,
            "layers": {
                "team": {"wrap_up_s": 60},
                "site": {"wrap_up_s": 45, "hold_reminder_s": 90},
                "board": {"ring_timeout_s": 25},
            },
        }
    )
    local = {"timers": {"hold_reminder_s": 100, "ring_timeout_s": 30, "wrap_up_extend_s": 15}}
    values = effective(policy, local)
    assert (values["wrap_up_s"].value, values["wrap_up_s"].source) == (60, "team")
    assert (values["hold_reminder_s"].value, values["hold_reminder_s"].source) == (90, "site")
    assert (values["ring_timeout_s"].value, values["ring_timeout_s"].source) == (25, "board")
    assert (values["wrap_up_extend_s"].value, values["wrap_up_extend_s"].source) == (15, "local")
    assert (values["consult_timeout_s"].value, values["consult_timeout_s"].source) == (30, "default")
    merged = apply(config.defaults(), values)
    assert merged["timers"]["wrap_up_s"] == 60 and merged["softphone"]["consult_timeout_s"] == 30


def test_a_lock_beats_the_more_specific_layers_and_the_local_config() -> None:
    policy = check_policy(
        {
            "version": 1,
            "layers": {"desk": {"hold_reminder_s": 200}, "site": {"hold_reminder_s": 90}},
            "locks": {"hold_reminder_s": "site"},
        }
    )
    chosen = effective(policy, {"timers": {"hold_reminder_s": 300}})["hold_reminder_s"]
    assert (chosen.value, chosen.source, chosen.locked) == (90, "site", True)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"wrap_up_s": "long"}, "timers.wrap_up_s must be a number"),
        ({"wrap_up_s": 99999}, "timers.wrap_up_s = 99999 is above the maximum"),
        ({"hold_reminder_s": math.nan}, "timers.hold_reminder_s = nan is not a finite number"),
        ({"hold_reminder_s": True}, "timers.hold_reminder_s must be a number, not a boolean"),
        ({"coffee_s": 5}, "unknown key 'coffee_s'"),
        ({"supervisor": "http://x"}, "softphone.supervisor must be a sip: URI"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(values: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        check_layer("team", values)


@pytest.mark.parametrize(
    "raw",
    [
        [],
        {"version": 0},
        {"version": True},
        {"version": 1, "layers": {"floor": {"wrap_up_s": 5}}},
        {"version": 1, "layers": {"desk": {"wrap_up_s": 5}}, "locks": {"wrap_up_s": "desk"}},
        {"version": 1, "layers": {}, "locks": {"wrap_up_s": "site"}},
        {"version": 1, "extra": 1},
    ],
)
def test_a_malformed_or_forged_policy_is_refused_whole(raw: object) -> None:
    with pytest.raises(PolicyError):
        check_policy(raw)


def test_a_desk_applies_a_policy_only_when_idle_and_its_wrap_up_keeps_its_timer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    local = {"timers": {"wrap_up_s": 30, "hold_reminder_s": 100}}
    daemon = Daemon(
        config.validate(local), WebSoftphone(), tmp_path / "state.json", clock=lambda: now[0], local_settings=local
    )
    desk = daemon.desk

    async def run() -> None:
        def event(kind: EventKind) -> SoftphoneEvent:
            return SoftphoneEvent(kind, "c1", "sip:c@x", "inbound")

        await daemon.apply(desk.softphone_event(event(EventKind.INCOMING), now[0]))
        await daemon.apply(desk.softphone_event(event(EventKind.ESTABLISHED), now[0] + 1))
        policy = Policy(2, {"team": {"wrap_up_s": 60}, "site": {"hold_reminder_s": 90}}, {"hold_reminder_s": "site"})
        daemon.set_policy(policy)
        assert desk.timers.wrap_up_s == 30 and daemon.settings_report()["pending"] == 2  # mid-call: waits
        now[0] = 150.0
        await daemon.apply(desk.softphone_event(event(EventKind.CLOSED), now[0]))
        assert desk.agent == L.AGENT_WRAP_UP and desk.wrap_up_until == 180.0  # the old 30 s
        assert desk.timers.wrap_up_s == 30  # still not idle: wrap-up
        now[0] = 181.0
        await daemon.apply(desk.tick(now[0]))
        assert desk.agent == L.AGENT_AVAILABLE
        assert (desk.timers.wrap_up_s, desk.timers.hold_reminder_s) == (60, 90)
        report = daemon.settings_report()
        assert report["version"] == 2 and report["pending"] is None
        assert report["effective"]["hold_reminder_s"] == {"value": 90, "source": "site", "locked": True}
        assert "hold_reminder_s is locked by the site: its value overrides the local config" in caplog.text
        daemon.set_policy(Policy(1, {"team": {"wrap_up_s": 5}}))  # an older version replayed
        assert desk.timers.wrap_up_s == 60

    asyncio.run(run())
