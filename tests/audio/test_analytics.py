"""Conversation figures from activity tracks and flags, and the meter's interface (no speech needed)."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from offhook.audio.analytics import (
    HOLD_REMINDER_S,
    AnalyticsConfig,
    ConversationMeter,
    conversation_figures,
    is_missed_checkin,
    missed_checkins,
)
from offhook.audio.vad import bridge, smooth

FRAME = 160


def track(n: int, *spans: tuple[float, float]) -> np.ndarray:
    """Frames active in each (start s, end s) span, 10 ms frames."""
    out = np.zeros(n, dtype=bool)
    for start, end in spans:
        out[round(start * 100) : round(end * 100)] = True
    return out


def test_talk_time_share_and_connected_time_exclude_hold():
    n = 3000  # 30 s
    agent = track(n, (1, 5), (12, 14), (20, 24))
    customer = track(n, (6, 10), (25, 28))
    hold = track(n, (11, 16))
    f = conversation_figures(agent, customer, None, hold)
    assert f.connected_s == pytest.approx(25.0)
    assert f.hold_s == pytest.approx(5.0)
    assert f.agent_talk_s == pytest.approx(8.0)  # 12-14 is on hold
    assert f.customer_talk_s == pytest.approx(7.0)
    assert f.agent_share == pytest.approx(8 / 15)
    assert f.holds == 1 and f.longest_hold_s == pytest.approx(5.0)


def test_overtalk_threshold_and_who_started_it():
    n = 2000
    agent = track(n, (1, 5), (9.6, 12))
    customer = track(n, (4.5, 8), (11.51, 14))  # 0.5 s with the agent started by the customer; then 0.49 s
    f = conversation_figures(agent, customer)
    assert f.overtalk_count == 1
    assert (f.overtalks[0].start_s, f.overtalks[0].end_s) == pytest.approx((4.5, 5.0))
    assert f.overtalks[0].started_by == "customer"
    assert f.overtalk_started_by_customer == 1 and f.overtalk_started_by_agent == 0
    g = conversation_figures(agent, customer, config=AnalyticsConfig(overtalk_s=0.4))
    assert [e.started_by for e in g.overtalks] == ["customer", "customer"]
    agent2 = track(n, (1, 5), (7, 9))  # the agent cuts in on the customer's turn
    h = conversation_figures(agent2, track(n, (5.5, 8)))
    assert [e.started_by for e in h.overtalks] == ["agent"]


def test_dead_air_count_total_longest_and_hold_splits_it():
    n = 4000
    agent = track(n, (0, 2), (5, 7), (20, 22))
    customer = track(n, (9.5, 11), (38, 40))
    hold = track(n, (12, 18))
    f = conversation_figures(agent, customer, None, hold)
    # 2-5 (3.0 s), 7-9.5 (2.5: not), 11-12 and 18-20 (hold between: not), 22-38 (16 s)
    assert [t for e in f.dead_airs for t in (e.start_s, e.end_s)] == pytest.approx([2, 5, 22, 38])
    assert f.dead_air_count == 2 and f.dead_air_s == pytest.approx(19.0) and f.dead_air_longest_s == pytest.approx(16)


def test_response_time_is_the_median_after_the_customer_stops():
    n = 3000
    customer = track(n, (0, 3), (5, 8), (10, 12), (14, 16), (16.5, 18))
    agent = track(n, (3.5, 4.5), (9, 9.8), (11, 13.5), (19.2, 21))
    f = conversation_figures(agent, customer)
    # 3 -> 3.5 (0.5), 8 -> 9 (1.0); 12: the agent already talking (overtalk); 16: the customer goes on;
    # 18 -> 19.2 (1.2)
    assert f.response_count == 3
    assert f.response_median_s == pytest.approx(1.0)


def test_muted_talk_is_counted_apart_and_is_no_overtalk():
    n = 2000
    agent = track(n, (1, 3), (6, 9))
    customer = track(n, (4, 10))
    muted = track(n, (5.5, 9.5))
    f = conversation_figures(agent, customer, muted=muted)
    assert f.agent_talk_s == pytest.approx(2.0)
    assert f.talking_while_muted_s == pytest.approx(3.0)
    assert f.overtalk_count == 0


def test_disconnected_time_counts_for_nothing():
    n = 2000
    agent = track(n, (0, 20))
    connected = track(n, (5, 10))
    f = conversation_figures(agent, np.zeros(n, dtype=bool), connected)
    assert f.connected_s == pytest.approx(5.0) and f.agent_talk_s == pytest.approx(5.0)


def test_longest_monologue_ends_at_the_other_side_or_dead_air():
    n = 5000
    agent = track(n, (0, 4), (5, 9), (9.5, 12), (16, 18), (20, 30))
    customer = track(n, (19, 19.5), (35, 38))
    f = conversation_figures(agent, customer)
    assert f.agent_longest_monologue_s == pytest.approx(12.0)  # 0-12; 16-18 after 4 s of dead air
    assert f.customer_longest_monologue_s == pytest.approx(3.0)


def test_missed_checkins_is_the_stores_long_hold_definition():
    from offhook.config import SCHEMA
    from offhook.metrics import store

    assert store.LONG_HOLD_S == HOLD_REMINDER_S == AnalyticsConfig().hold_reminder_s
    assert SCHEMA["timers"]["hold_reminder_s"].default == HOLD_REMINDER_S
    holds = [(10.0, 130.0), (200.0, 320.5), (400.0, 410.0), (500.0, 741.0)]
    assert not is_missed_checkin(120.0) and is_missed_checkin(120.01)
    assert missed_checkins(holds) == 2
    assert missed_checkins(holds, reminder_s=5.0) == 4
    # The store's own computation over the same rows agrees.
    conn = sqlite3.connect(":memory:")
    conn.executescript(store.MIGRATIONS[1])
    conn.executemany(
        "INSERT INTO holds (call, seq, start_mono, start_wall, end_mono) VALUES (1, ?, ?, 0, ?)",
        [(i, a, b) for i, (a, b) in enumerate(holds)],
    )
    assert store.CallRecorder._hold_totals(conn, 1)[2] == missed_checkins(holds)


def test_meter_flags_missed_checkin_from_a_long_hold():
    meter = ConversationMeter(AnalyticsConfig(hold_reminder_s=1.0))
    silence = np.zeros(FRAME)
    for k in range(400):
        meter.push(silence, silence, silence, hold=100 <= k < 230, consult=300 <= k < 350)
    f = meter.finish()
    assert f.holds == 2 and f.missed_checkins == 1
    assert f.hold_s == pytest.approx(1.8) and f.connected_s == pytest.approx(2.2)
    assert f.agent_talk_s == 0 and f.customer_talk_s == 0


def test_meter_refuses_partial_or_unequal_frames():
    meter = ConversationMeter()
    with pytest.raises(ValueError, match="160 samples"):
        meter.push(np.zeros(100), np.zeros(100), np.zeros(100))
    with pytest.raises(ValueError):
        meter.push(np.zeros(160), np.zeros(160), np.zeros(320))


def test_meter_twenty_ms_frames_equal_ten_ms_frames_and_json():
    rng = np.random.default_rng(5)
    n = 3 * 16000
    tone = np.sin(2 * np.pi * 440 * np.arange(n) / 16000) * track(n // FRAME, (0.5, 1.5)).repeat(FRAME)
    noise = 1e-3 * rng.standard_normal(n)
    mic, ref = tone + noise, 0.3 * np.roll(tone, 16000) + noise
    results = []
    for size in (FRAME, 2 * FRAME):
        meter = ConversationMeter()
        for k in range(n // size):
            sl = slice(k * size, (k + 1) * size)
            meter.push(mic[sl], mic[sl], ref[sl])
        results.append(meter.finish().as_dict())
    assert results[0] == results[1]
    text = json.dumps(results[0], allow_nan=False)
    f = json.loads(text)
    assert f["agent_talk_s"] == pytest.approx(1.0, abs=0.15)
    assert f["customer_talk_s"] == pytest.approx(1.0, abs=0.15)
    assert f["quality"]["noise_floor_dbfs"] == pytest.approx(-60, abs=2)
    assert not math.isnan(f["quality"]["clipping_pct"])


def test_smoothing_bridges_gaps_drops_blips_and_pads():
    raw = track(200, (0.1, 0.3), (0.5, 0.6), (0.85, 1.0), (1.5, 1.53))
    assert np.array_equal(bridge(raw, 30), track(200, (0.1, 0.6), (0.85, 1.0), (1.5, 1.53)) | track(200, (0.6, 0.85)))
    from offhook.audio.vad import Smoothing

    out = smooth(raw, Smoothing(bridge_frames=30, min_frames=8, pre_frames=2, post_frames=5))
    assert np.array_equal(out, track(200, (0.08, 1.05)))


def test_residual_echo_estimate_keeps_leftover_echo_out():
    """What the chain's suppressor says it left (EchoGains.left) raises the agent's floor, as for the gate."""
    rng = np.random.default_rng(9)
    n = 4 * 16000
    burst = track(n // FRAME, (1.0, 3.0)).repeat(FRAME)
    cleaned = 1e-4 * rng.standard_normal(n) + 0.01 * rng.standard_normal(n) * burst  # -40 dBFS while on
    results = []
    for left in (0.0, 1e-4):
        meter = ConversationMeter()
        for k in range(n // FRAME):
            sl = slice(k * FRAME, (k + 1) * FRAME)
            meter.push(cleaned[sl], cleaned[sl], np.zeros(FRAME), left * burst[k * FRAME])
        results.append(meter.finish().agent_talk_s)
    assert results[0] == pytest.approx(2.0, abs=0.15)
    assert results[1] == 0.0
