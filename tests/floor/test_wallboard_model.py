"""The wallboard's and the inventory's live models (sans-IO): names from call records, the desks to
look a name up for, and inventory rows kept from the desks' messages in (run, seq) order."""

from __future__ import annotations

from typing import Any

from offhook.floor import wallboard as W


def state(seq: int, status: str = "available", run: int = 1) -> dict[str, Any]:
    return {"run": run, "seq": seq, "status": status, "since": 100.0, "hold_since": None, "ts": 100.0 + seq}


def record(agent: str, ring_wall: float) -> dict[str, Any]:
    return {"agent": agent, "ring_wall": ring_wall}


def test_the_latest_call_names_the_tile_and_an_older_one_never_renames_it() -> None:
    board = W.Board()
    board.apply("state", "hq", "desk-01", state(1))
    view = board.learn_agent("hq", "desk-01", [record("ann", 200.0), record("bob", 300.0), record("ann", 250.0)])
    assert view is not None and view["agent"] == "bob"
    assert board.learn_agent("hq", "desk-01", [record("ann", 299.0)]) is None  # a replayed older call
    assert board.learn_agent("hq", "desk-01", [record("bob", 301.0)]) is None  # the same name: no message
    assert board.name_agents({("hq", "desk-01"): ("ann", 100.0)}) == []  # the periodic read, older
    [renamed] = board.name_agents({("hq", "desk-01"): ("cat", 400.0)})
    assert renamed["agent"] == "cat" and board.tiles[("hq", "desk-01")].agent == "cat"
    assert board.learn_agent("hq", "desk-01", []) is None


def test_a_new_agent_signed_in_at_a_desk_names_its_tile_before_any_call() -> None:
    board = W.Board()
    board.apply("state", "hq", "desk-01", state(1))
    board.learn_agent("hq", "desk-01", [record("ann", 50.0)])  # ann's last call at this desk
    view = board.apply("state", "hq", "desk-01", {**state(1, run=2), "name": "bob"})  # bob signs in
    assert view is not None and view["agent"] == "bob"
    assert board.take_unnamed() == [], "named: nothing to look up"
    assert board.learn_agent("hq", "desk-01", [record("ann", 90.0)]) is None  # ann's backlog arrives late
    assert board.name_agents({("hq", "desk-01"): ("ann", 90.0)}) == []
    board.apply("state", "hq", "desk-01", state(2, "on_call", run=2))  # an older desk: no name, no change
    assert board.tiles[("hq", "desk-01")].agent == "bob"


def test_a_desk_without_a_name_is_looked_up_once_as_it_comes_online() -> None:
    board = W.Board()
    board.apply("state", "hq", "desk-01", state(1))
    board.apply("presence", "hq", "desk-02", {"run": 1, "seq": 2, "online": True, "ts": 1.0})
    assert board.take_unnamed() == [("hq", "desk-01"), ("hq", "desk-02")]
    board.apply("state", "hq", "desk-01", state(2, "on_call"))  # not its first state: no new look-up
    assert board.take_unnamed() == []
    board.learn_agent("hq", "desk-02", [record("ann", 5.0)])
    board.apply("presence", "hq", "desk-02", {"run": 1, "seq": 3, "online": False, "ts": 2.0})
    board.apply("presence", "hq", "desk-02", {"run": 2, "seq": 2, "online": True, "ts": 3.0})
    board.apply("presence", "hq", "desk-03", {"run": 1, "seq": 2, "online": False, "ts": 3.0})
    assert board.take_unnamed() == []  # named already; an offline desk is not looked up


def test_inventory_rows_follow_the_desks_messages_in_order() -> None:
    inventory = W.Inventory()
    inventory.seed([{"site": "hq", "desk": "desk-09", "serial": "S9", "agent": "zoe", "last_seen": 1.0}])
    assert inventory.apply("state", "hq", "desk-01", state(1) | {"team": "red"}, 10.0) is None  # not listed yet
    unit = {"serial": "S1", "board": "pico2", "firmware": "1.9.2", "slot": "a", "health": "ok", "transport": "hid"}
    row = inventory.apply("inventory", "hq", "desk-01", {"run": 1, "seq": 2, "connected": True} | unit, 11.0)
    assert row is not None and (row["firmware"], row["team"], row["last_seen"]) == ("1.9.2", "red", 11.0)
    older = {"run": 1, "seq": 1, "connected": True} | unit | {"firmware": "1.0.0"}
    assert inventory.apply("inventory", "hq", "desk-01", older, 12.0) is None  # out of order: ignored
    row = inventory.apply("presence", "hq", "desk-01", {"run": 1, "seq": 3, "online": True, "team": "blue"}, 13.0)
    assert row is not None and (row["online"], row["team"]) == (True, "blue")
    row = inventory.apply("state", "hq", "desk-01", state(4) | {"team": "red"}, 14.0)
    assert row is not None and row["team"] == "blue"  # the presence says the team once it has
    row = inventory.apply("records", "hq", "desk-01", {"records": [record("ann", 50.0)]}, 15.0)
    assert row is not None and row["agent"] == "ann"
    assert inventory.apply("records", "hq", "desk-01", {"records": [record("bob", 40.0)]}, 16.0) is None
    inventory.seed([{"site": "hq", "desk": "desk-01", "serial": "OLD", "agent": "", "last_seen": 0.0}])
    snapshot = inventory.snapshot(20.0)
    assert [(u["desk"], u["serial"]) for u in snapshot["units"]] == [("desk-01", "S1"), ("desk-09", "S9")]
    assert snapshot["type"] == "snapshot" and snapshot["now"] == 20.0
