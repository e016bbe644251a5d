"""The rollout stage planner (sans-IO): canary, waves, soak, halt threshold, pins, maintenance
window, pause/resume/abort and an offline desk's catch-up, driven with explicit time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from offhook.floor.rollouts import (
    Cancel,
    Desk,
    Dispatch,
    Prefetch,
    Rollout,
    RolloutError,
    Spec,
    parse_target,
    parse_window,
)

NEW = "1.2.0"


def desks(count: int, **kw: object) -> list[Desk]:
    base: dict = {"site": "hq", "team": "sales", "board": "pico", "fw": "1.1.0"}
    base.update(kw)
    return [Desk(f"hq/desk-{i:02d}", **base) for i in range(count)]


def spec(**kw: object) -> Spec:
    base: dict = {"name": "r1", "version": NEW, "board": "pico", "sha256": "ab" * 32, "soak_s": 60.0}
    base.update(kw)
    return Spec(**base)


def sent(actions: list) -> list[str]:
    return [a.desk for a in actions if isinstance(a, Dispatch)]


def test_a_canary_of_one_then_waves_with_a_soak_between_stages() -> None:
    floor, phases = desks(5), {}
    r = Rollout(spec(canary=1, wave_percent=50))
    assert sent(r.tick(floor, phases, 0)) == ["hq/desk-00"]
    assert sent(r.tick(floor, phases, 5)) == [], "the canary has not ended"
    phases["hq/desk-00"] = "confirmed"
    assert sent(r.tick(floor, phases, 10)) == [] and r.stage_ended == 10
    assert sent(r.tick(floor, phases, 69)) == [], "soaking"
    assert sent(r.tick(floor, phases, 70)) == ["hq/desk-01", "hq/desk-02", "hq/desk-03"]  # 50 % of 5, rounded up
    phases.update(dict.fromkeys(["hq/desk-01", "hq/desk-02", "hq/desk-03"], "confirmed"))
    assert sent(r.tick(floor, phases, 80)) == []
    assert sent(r.tick(floor, phases, 140)) == ["hq/desk-04"]
    phases["hq/desk-04"] = "up to date"
    r.tick(floor, phases, 150)
    assert r.status == "running"
    r.tick(floor, phases, 210)
    assert r.status == "complete" and len(r.stages) == 3


def test_a_canary_in_percent_and_desks_already_on_the_version_are_left_alone() -> None:
    floor = [*desks(10), Desk("hq/new", team="sales", board="pico", fw=NEW)]
    r = Rollout(spec(canary=20, canary_percent=True))
    assert sent(r.tick(floor, {}, 0)) == ["hq/desk-00", "hq/desk-01"]
    assert r.total == 10


def test_failures_past_the_threshold_halt_the_rollout_until_it_is_resumed() -> None:
    floor, phases = desks(6), {}
    r = Rollout(spec(canary=2, max_failed_percent=40))
    r.tick(floor, phases, 0)
    phases.update({"hq/desk-00": "confirmed", "hq/desk-01": "rolled back"})
    assert r.tick(floor, phases, 1) == [] and r.status == "halted"
    assert r.reason == "stage 1: 1 of 2 failed or rolled back"
    assert r.tick(floor, phases, 1000) == [], "halted: nothing more goes out"
    r.resume()
    assert sent(r.tick(floor, phases, 1001)) == [] and r.status == "running", "the soak starts now"
    assert len(sent(r.tick(floor, phases, 1061))) == 2  # 25 % of 6, rounded up


def test_one_failure_in_a_wave_under_the_threshold_goes_on() -> None:
    floor, phases = desks(11), {}
    r = Rollout(spec(canary=1, wave_percent=100, max_failed_percent=10, soak_s=0))
    r.tick(floor, phases, 0)
    phases["hq/desk-00"] = "confirmed"
    wave = sent(r.tick(floor, phases, 1))
    assert len(wave) == 10
    phases.update(dict.fromkeys(wave, "confirmed"))
    phases[wave[0]] = "failed"  # 1 of 10: 10 %, not above it
    r.tick(floor, phases, 2)
    assert r.status != "halted"


def test_a_pinned_team_is_skipped_and_the_rollout_says_so() -> None:
    floor = [*desks(2), Desk("b/desk-00", site="b", team="support", board="pico", fw="1.1.0")]
    r = Rollout(spec(canary=100, canary_percent=True, pins={"support": "1.1.0"}))
    assert sent(r.tick(floor, {}, 0)) == ["hq/desk-00", "hq/desk-01"]
    assert r.skipped == {"b/desk-00": "team support is pinned to 1.1.0"}


def test_the_target_and_the_board() -> None:
    floor = [
        Desk("hq/a", site="hq", team="sales", board="pico", fw="1.0.0"),
        Desk("hq/b", site="hq", team="sales", board="pico", fw="1.1.5"),
        Desk("hq/c", site="hq", team="sales", board="esp32s3", fw="1.0.0"),
        Desk("x/d", site="x", team="sales", board="pico", fw="1.0.0"),
    ]
    r = Rollout(spec(canary=100, canary_percent=True, target=parse_target(["site=hq", "version<1.1.0"])))
    assert sent(r.tick(floor, {}, 0)) == ["hq/a"]
    with pytest.raises(RolloutError, match="is not team=NAME"):
        parse_target(["colour=blue"])
    with pytest.raises(RolloutError, match="names team twice"):
        parse_target(["team=a", "team=b"])


def test_the_maintenance_window_is_each_desks_local_time() -> None:
    paris = Desk("hq/paris", board="pico", fw="1.1.0", tz="Europe/Paris")
    tokyo = Desk("hq/tokyo", board="pico", fw="1.1.0", tz="Asia/Tokyo")
    r = Rollout(spec(canary=100, canary_percent=True, window=parse_window("22:00-05:00")))
    noon_utc = datetime(2026, 12, 7, 12, 0, tzinfo=UTC).timestamp()  # 13:00 in Paris, 21:00 in Tokyo
    assert sent(r.tick([paris, tokyo], {}, noon_utc)) == []
    assert sent(r.tick([paris, tokyo], {}, noon_utc + 3600)) == ["hq/tokyo"]  # 22:00 in Tokyo
    assert sent(r.tick([paris, tokyo], {}, noon_utc + 10 * 3600)) == ["hq/paris"]  # 23:00 in Paris
    with pytest.raises(RolloutError):
        parse_window("25:00-01:00")


def test_pause_and_resume() -> None:
    floor, phases = desks(3), {}
    r = Rollout(spec(canary=1, soak_s=0))
    r.tick(floor, phases, 0)
    r.pause()
    phases["hq/desk-00"] = "confirmed"
    assert r.tick(floor, phases, 10) == []
    with pytest.raises(RolloutError, match="is paused, not running"):
        r.pause()
    r.resume()
    assert sent(r.tick(floor, phases, 11)) == ["hq/desk-01"]  # no soak: the next stage at once


def test_abort_drops_queued_updates_and_an_offline_desk_does_not_catch_up() -> None:
    floor, phases = desks(3), {}
    floor[2] = Desk("hq/desk-02", site="hq", team="sales", board="pico", fw="1.1.0", online=False)
    r = Rollout(spec(canary=2))
    assert sent(r.tick(floor, phases, 0)) == ["hq/desk-00", "hq/desk-01"]
    phases.update({"hq/desk-00": "receiving", "hq/desk-01": "queued"})
    r.abort()
    assert r.tick(floor, phases, 1) == [Cancel("hq/desk-01")]
    assert r.tick(floor, phases, 2) == [], "once"
    floor[2] = Desk("hq/desk-02", site="hq", team="sales", board="pico", fw="1.1.0")
    assert r.tick(floor, phases, 3) == []


def test_the_next_stage_fetches_the_bundle_ahead_during_the_soak() -> None:
    floor, phases = desks(5), {}
    floor[2] = Desk("hq/desk-02", site="hq", team="sales", board="pico", fw="1.1.0", online=False)
    r = Rollout(spec(canary=1, wave_percent=40))
    assert r.tick(floor, phases, 0) == [Dispatch("hq/desk-00")]
    phases["hq/desk-00"] = "confirmed"
    ahead = [Prefetch("hq/desk-01"), Prefetch("hq/desk-03")]  # 40 % of 5 is 2; desk-02 is offline
    assert r.tick(floor, phases, 10) == ahead
    assert r.tick(floor, phases, 20) == [], "once"
    assert Rollout.from_json(r.as_json()).prefetched == {"hq/desk-01", "hq/desk-03"}
    assert r.tick(floor, phases, 70) == [Dispatch("hq/desk-01"), Dispatch("hq/desk-03")], "the same desks"
    # Aborted while the next stage fetches ahead: those desks are told to drop it too.
    phases.update(dict.fromkeys(["hq/desk-01", "hq/desk-03"], "confirmed"))
    assert r.tick(floor, phases, 80) == [Prefetch("hq/desk-04")]
    r.abort()
    assert r.tick(floor, phases, 81) == [Cancel("hq/desk-04")]


def test_no_fetch_ahead_without_a_soak() -> None:
    floor, phases = desks(3), {}
    r = Rollout(spec(canary=1, wave_percent=100, soak_s=0))
    r.tick(floor, phases, 0)
    phases["hq/desk-00"] = "confirmed"
    assert r.tick(floor, phases, 1) == [Dispatch("hq/desk-01"), Dispatch("hq/desk-02")]


def test_a_desk_offline_during_the_rollout_catches_up_when_it_is_back() -> None:
    floor, phases = desks(3), {}
    floor[1] = Desk("hq/desk-01", site="hq", team="sales", board="pico", fw="1.1.0", online=False)
    r = Rollout(spec(canary=1, wave_percent=100, soak_s=0))
    assert sent(r.tick(floor, phases, 0)) == ["hq/desk-00"]
    phases["hq/desk-00"] = "confirmed"
    assert sent(r.tick(floor, phases, 1)) == ["hq/desk-02"]
    phases["hq/desk-02"] = "confirmed"
    r.tick(floor, phases, 2)
    assert r.status == "complete"
    floor[1] = Desk("hq/desk-01", site="hq", team="sales", board="pico", fw="1.1.0")
    assert sent(r.tick(floor, phases, 3)) == ["hq/desk-01"]


def test_a_rollout_survives_storage() -> None:
    floor, phases = desks(4), {}
    r = Rollout(spec(canary=1, window=(60, 120), pins={"x": "1.0.0"}, target=parse_target(["team=sales"])))
    r.tick(floor, phases, datetime(2026, 1, 1, 1, 30, tzinfo=UTC).timestamp())
    again = Rollout.from_json(r.as_json())
    assert again == r


def test_bad_specs_are_refused() -> None:
    for bad in ({"canary": 0}, {"wave_percent": 0}, {"soak_s": -1}, {"max_failed_percent": 101}):
        with pytest.raises(RolloutError):
            spec(**bad)


def test_the_view_of_a_rollout_names_each_units_stage_and_phase() -> None:
    from offhook.floor.rollouts import views

    r = Rollout(spec(canary=2, window=(60, 120)))
    r.stages, r.dispatched, r.total = [["hq/desk-00", "hq/desk-01"]], {"hq/desk-00", "hq/desk-02"}, 3
    created = datetime(2026, 12, 7, tzinfo=UTC)
    reported = [("r1", "hq/desk-00", "receiving", 40, ""), ("other", "hq/desk-00", "confirmed", 100, "")]
    (view,) = views([("r1", r.as_json(), created)], reported)
    assert view["units"] == {
        "hq/desk-00": {"phase": "receiving", "percent": 40, "reason": "", "stage": 1},
        "hq/desk-01": {"phase": "waiting", "percent": 0, "reason": "", "stage": 1},  # its window is closed
        "hq/desk-02": {"phase": "sent", "percent": 0, "reason": "", "stage": 0},  # a catch-up
    }
    assert (view["done"], view["targeted"], view["stage"]) == (0, 3, 1)
    r.abort()
    (view,) = views([("r1", r.as_json(), created)], reported)
    assert sorted(view["units"]) == ["hq/desk-00", "hq/desk-02"], "an aborted rollout waits for nobody"
