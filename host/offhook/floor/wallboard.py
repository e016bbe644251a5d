"""The wallboard's live model (sans-IO): every desk's tile, and the messages pages receive.

Central's ingest hands each accepted state and presence message to :meth:`Board.apply`; a tile that
changed comes back as one ``tile`` message, which web.py sends to every wallboard at once (pushed,
never polled). Pages filter by site and team and count the team totals themselves, so one message
serves every page. Timers are not ticked here: a tile carries the desk's own wall times (``since``,
``hold_since``, ``call_since``) and every message carries central's ``now``, so a page counts
seconds from its clock corrected by that offset.

IT's inventory is kept the same way (:class:`Inventory`) and pushed to its page as ``unit`` messages.

Ordering is the floor's: a message applies only if its desk's (run, seq) is above what the tile
has (docs/floor.md), so retained messages replayed after a central restart never go backwards.
The state message carries no call id, so the call's start (``call_since``) is the first answer
after a status outside a call; a central started while a desk is on hold sees the hold's start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

IN_CALL = ("on_call", "on_hold")
HOLD_REMINDER_S = 120.0  # timers.hold_reminder_s's default: the check-in interval agents keep
PROTOCOL = 1


@dataclass
class Tile:
    site: str
    desk: str
    team: str = ""
    agent: str = ""  # the agent signed in, from the desk's state or its latest call record ("" before either)
    agent_wall: float = float("-inf")  # when that was true (state's ts, call's ring time): older never renames
    status: str = "offline"
    since: float | None = None
    hold_since: float | None = None
    call_since: float | None = None
    online: bool = False
    ts: float | None = None  # the desk's wall time when it published the latest change
    state_order: tuple[int, int] = (-1, -1)
    presence_order: tuple[int, int] = (-1, -1)

    def view(self) -> dict[str, Any]:
        return {
            "id": f"{self.site}/{self.desk}",
            "site": self.site,
            "desk": self.desk,
            "team": self.team,
            "agent": self.agent,
            # A PC that is down shows offline whatever its last state said.
            "status": self.status if self.online else "offline",
            "since": self.since,
            "hold_since": self.hold_since if self.online else None,
            "call_since": self.call_since if self.online else None,
            "online": self.online,
            "ts": self.ts,
        }


@dataclass
class Board:
    hold_reminder_s: float = HOLD_REMINDER_S
    tiles: dict[tuple[str, str], Tile] = field(default_factory=dict)
    figures: list[dict[str, Any]] = field(default_factory=list)
    # Desks that came online (or showed a state) without a name: the caller looks their latest call
    # record up at once (take_unnamed), rather than at its next periodic read of every name.
    unnamed: set[tuple[str, str]] = field(default_factory=set)

    def _tile(self, site: str, desk: str) -> Tile:
        tile = self.tiles.get((site, desk))
        if tile is None:
            tile = self.tiles[(site, desk)] = Tile(site, desk)
        return tile

    def apply(self, kind: str, site: str, desk: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """A desk's checked ``state`` or ``presence`` body; the changed tile's view, or None."""
        order = (int(body["run"]), int(body["seq"]))
        tile = self._tile(site, desk)
        if kind == "presence":
            if order <= tile.presence_order:
                return None
            tile.presence_order = order
            tile.online = bool(body["online"])
            if tile.online and not tile.agent:
                self.unnamed.add((site, desk))
            tile.team = str(body.get("team") or tile.team)
            if not tile.online:
                tile.ts = float(body["ts"])
            return tile.view()
        if kind != "state" or order <= tile.state_order:
            return None
        before, first = tile.status, tile.state_order == (-1, -1)
        tile.state_order = order
        tile.status = str(body["status"])
        tile.team = str(body.get("team") or tile.team)
        tile.since = float(body["since"])
        tile.hold_since = None if body.get("hold_since") is None else float(body["hold_since"])
        tile.ts = float(body["ts"])
        if tile.status not in IN_CALL:
            tile.call_since = None
        elif before not in IN_CALL or tile.call_since is None:
            tile.call_since = tile.since
        if not tile.online and tile.presence_order == (-1, -1):
            tile.online = True  # state without presence yet (the presence message may follow): it is up
        if body.get("name"):  # the desk says who is signed in: a new agent is named before any call
            self._name((site, desk), str(body["name"]), tile.ts)
        elif not tile.agent and first:
            self.unnamed.add((site, desk))
        return tile.view()

    def learn_agent(self, site: str, desk: str, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """A desk's checked call records as central receives them: the agent of the latest call (by
        its ring time) names the tile at once; the changed tile's view, or None."""
        if not records:
            return None
        latest = max(records, key=lambda record: float(record["ring_wall"]))
        return self._name((site, desk), str(latest["agent"]), float(latest["ring_wall"]))

    def name_agents(self, names: dict[tuple[str, str], tuple[str, float]]) -> list[dict[str, Any]]:
        """Agents' names from PostgreSQL, each with its call's ring time; the tiles that changed."""
        changed = [self._name(key, name, float(wall)) for key, (name, wall) in names.items()]
        return [view for view in changed if view is not None]

    def take_unnamed(self) -> list[tuple[str, str]]:
        """The desks to look a name up for now (each once until it shows up without one again)."""
        keys = sorted(key for key in self.unnamed if not self.tiles[key].agent)  # one try per coming online
        self.unnamed.clear()
        return keys

    def _name(self, key: tuple[str, str], name: str, wall: float) -> dict[str, Any] | None:
        tile = self._tile(*key)
        if wall < tile.agent_wall:
            return None  # a replayed older call: its agent may have left the desk since
        tile.agent_wall = wall
        if tile.agent == name:
            return None
        tile.agent = name
        return tile.view()

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "type": "snapshot",
            "protocol": PROTOCOL,
            "now": now,
            "hold_reminder_s": self.hold_reminder_s,
            "tiles": [tile.view() for _, tile in sorted(self.tiles.items())],
            "figures": self.figures,
        }


UNIT_FIELDS = ("serial", "board", "firmware", "slot", "health", "transport", "connected")


@dataclass
class Inventory:
    """IT's inventory, live (sans-IO): each unit's row as web.py's INVENTORY_SQL gives it, seeded from
    PostgreSQL and then kept from the presence, inventory, state and records messages central
    accepts, with the same (run, seq) guard as the tiles. :meth:`apply` returns the changed row,
    which web.py pushes to every open inventory page (``unit``), so the page never polls. A unit is
    listed once its desk said presence or inventory, as in the SQL; ``last_seen`` is central's
    clock when it last heard from the desk."""

    units: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    listed: set[tuple[str, str]] = field(default_factory=set)
    orders: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)
    agent_walls: dict[tuple[str, str], float] = field(default_factory=dict)

    def seed(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            key = (str(row["site"]), str(row["desk"]))
            if key in self.listed:
                continue  # a message since central started is newer than PostgreSQL's row
            self.units[key] = dict(row)
            self.listed.add(key)

    def _row(self, site: str, desk: str) -> dict[str, Any]:
        row = self.units.get((site, desk))
        if row is None:
            row = self.units[(site, desk)] = {
                "site": site,
                "desk": desk,
                "serial": "",
                "team": "",
                "agent": "",
                "board": "",
                "firmware": "",
                "slot": "",
                "health": "",
                "transport": "",
                "connected": False,
                "online": False,
                "last_seen": None,
            }
        return row

    def apply(self, kind: str, site: str, desk: str, body: dict[str, Any], now: float) -> dict[str, Any] | None:
        """A checked presence, inventory, state or records body; the unit's changed row, or None."""
        key = (site, desk)
        if kind == "records":
            if not body.get("records"):
                return None
            latest = max(body["records"], key=lambda record: float(record["ring_wall"]))
            if float(latest["ring_wall"]) < self.agent_walls.get(key, float("-inf")):
                return None
            self.agent_walls[key] = float(latest["ring_wall"])
            row = self._row(site, desk)
            if row["agent"] == latest["agent"]:
                return None
            row["agent"] = str(latest["agent"])
            return dict(row) if key in self.listed else None
        if kind not in ("presence", "inventory", "state"):
            return None
        order = (int(body["run"]), int(body["seq"]))
        if order <= self.orders.get((kind, site, desk), (-1, -1)):
            return None
        self.orders[(kind, site, desk)] = order
        row = self._row(site, desk)
        if kind == "presence":
            row["online"] = bool(body["online"])
            row["team"] = str(body.get("team") or "")
            self.listed.add(key)
        elif kind == "inventory":
            row.update({name: body[name] for name in UNIT_FIELDS})
            self.listed.add(key)
        elif ("presence", site, desk) not in self.orders and body.get("team"):
            row["team"] = str(body["team"])  # the desk's presence, when known, says its team
        row["last_seen"] = now
        return dict(row) if key in self.listed else None

    def snapshot(self, now: float) -> dict[str, Any]:
        rows = [dict(self.units[key]) for key in sorted(self.listed)]
        return {"type": "snapshot", "protocol": PROTOCOL, "now": now, "units": rows}


def unit_message(row: dict[str, Any], now: float) -> str:
    return dumps({"type": "unit", "now": now, "unit": row})


def tile_message(view: dict[str, Any], now: float) -> str:
    return dumps({"type": "tile", "now": now, "tile": view})


def figures_message(figures: list[dict[str, Any]], now: float) -> str:
    return dumps({"type": "figures", "now": now, "figures": figures})


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


# Today's figures per (site, team): sums, so that a page adds the groups its filter keeps and
# divides once (AHT, speed of answer and missed rate keep the report's definitions: metrics/report.py).
# "Today" is each call's own agent's local day, as in the reports.
FIGURES_SQL = """
SELECT c.site, coalesce(d.team, '') AS team,
    count(*) AS calls,
    count(*) FILTER (WHERE c.outcome IN ('answered', 'transferred', 'escalated')) AS handled,
    count(*) FILTER (WHERE c.outcome IN ('missed', 'abandoned')) AS missed,
    coalesce(sum(coalesce(c.talk_s, 0) + coalesce(c.hold_s, 0) + coalesce(c.wrap_s, 0))
        FILTER (WHERE c.outcome IN ('answered', 'transferred', 'escalated')), 0) AS handle_s,
    coalesce(sum(c.ring_s) FILTER (WHERE c.outcome IN ('answered', 'transferred', 'escalated')), 0) AS ring_s,
    count(c.ring_s) FILTER (WHERE c.outcome IN ('answered', 'transferred', 'escalated')) AS rung,
    coalesce(sum(c.long_holds), 0) AS long_holds
FROM calls c LEFT JOIN desks d ON d.site = c.site AND d.desk = c.desk
WHERE c.local_day BETWEEN current_date - 1 AND current_date + 1
    AND c.local_day = (now() AT TIME ZONE c.tz)::date
GROUP BY 1, 2 ORDER BY 1, 2
"""

# The latest agent name of each desk that took a call since yesterday, with that call's ring time (the
# state message carries no name; names also come from records as they arrive, Board.learn_agent).
AGENTS_SQL = """
SELECT DISTINCT ON (site, desk) site, desk, agent, ring_wall FROM calls
WHERE local_day >= current_date - 1 ORDER BY site, desk, ring_wall DESC
"""
# The same for a few desks that came online without a name, over the last 30 days.
AGENTS_OF_SQL = """
SELECT DISTINCT ON (c.site, c.desk) c.site, c.desk, c.agent, c.ring_wall
FROM calls c JOIN unnest(%s::text[], %s::text[]) AS u(site, desk) ON c.site = u.site AND c.desk = u.desk
WHERE c.local_day >= current_date - 30 ORDER BY c.site, c.desk, c.ring_wall DESC
"""

LIVE_SQL = """
SELECT s.site, s.desk, s.team, s.run, s.seq, s.status, s.since, s.hold_since, s.ts,
    d.online, d.run, d.seq, d.presence_ts
FROM live_state s LEFT JOIN desks d USING (site, desk)
"""


def figures_rows(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    names = ("site", "team", "calls", "handled", "missed", "handle_s", "ring_s", "rung", "long_holds")
    return [
        {name: (float(v) if isinstance(v, Decimal) else v) for name, v in zip(names, row, strict=True)} for row in rows
    ]


def load_live(board: Board, rows: list[tuple[Any, ...]]) -> None:
    """Seed the board from PostgreSQL's live tables (retained messages then bring it up to date)."""
    for site, desk, team, run, seq, status, since, hold_since, ts, online, prun, pseq, pts in rows:
        board.apply(
            "state",
            site,
            desk,
            {
                "run": run,
                "seq": seq,
                "status": status,
                "since": since,
                "hold_since": hold_since,
                "ts": ts,
                "team": team,
            },
        )
        if online is not None:
            board.apply(
                "presence", site, desk, {"run": prun, "seq": pseq, "online": online, "ts": pts or 0.0, "team": team}
            )
