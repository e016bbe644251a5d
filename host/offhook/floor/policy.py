"""Floor-wide settings, central's side: layers and locks in PostgreSQL, each desk's policy published.

- A change (`offhook central config set/unset`) is checked with ``settings.check_layer`` before it
  is stored: a bad value never reaches a desk. Every change takes the next version
  (``settings_version``) in the same transaction as its rows (migration 4).
- :func:`resolve` (pure) turns the stored rows into one desk's policy: the values of its desk, team,
  site and board model layers, and the locks of its site and team (a site's lock replaces a team's).
- :class:`PolicyService` runs in `offhook central run`: it reads the rows and the desks it knows
  (presence for the team, inventory for the board) every ``poll_s`` and publishes, retained, each
  desk's policy whose content changed, so a desk offline during a change gets it on reconnect. It
  also keeps each desk's effective-settings report (``desk_settings``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from offhook import settings
from offhook.floor import pgstore
from offhook.floor import schema as S
from offhook.floor.client import Publish
from offhook.settings import PolicyError

log = logging.getLogger("offhook.central")

POLL_S = 0.5


@dataclass(frozen=True)
class Row:
    layer: str
    target: str
    key: str
    value: Any
    locked: bool


def check_change(layer: str, target: str, values: dict[str, Any], lock: bool) -> dict[str, Any]:
    """The checked values of one change; PolicyError (naming the key) when any is bad."""
    if not S.NAME.match(target):
        raise PolicyError(f"policy: {layer} {target!r} is not a name (letters, digits, _ . -)")
    if lock and layer not in settings.LOCKING_LAYERS:
        raise PolicyError(f"policy: only a site or a team may lock a key, not a {layer}")
    if not values:
        raise PolicyError("policy: no key=value given")
    return settings.check_layer(layer, values)


def resolve(rows: list[Row], version: int, *, site: str, desk: str, team: str, board: str) -> dict[str, Any]:
    """One desk's policy body (as settings.check_policy takes it) from every stored row."""
    targets = {"desk": desk, "team": team, "site": site, "board": board}
    layers: dict[str, dict[str, Any]] = {}
    locks: dict[str, str] = {}
    for row in rows:
        if not targets[row.layer] or targets[row.layer] != row.target:
            continue
        layers.setdefault(row.layer, {})[row.key] = row.value
        if row.locked and (row.key not in locks or row.layer == "site"):
            locks[row.key] = row.layer
    return {"version": version, "layers": layers, "locks": locks}


# ------------------------------------------------------------ storage (the CLI: a sync connection)

_BUMP = "UPDATE settings_version SET version = version + 1 RETURNING version"
_UPSERT = """
INSERT INTO settings (layer, target, key, value, locked, version, updated_at) VALUES (%s, %s, %s, %s, %s, %s, now())
ON CONFLICT (layer, target, key) DO UPDATE SET value = EXCLUDED.value, locked = EXCLUDED.locked,
    version = EXCLUDED.version, updated_at = now()
"""
ROWS_SQL = "SELECT layer, target, key, value, locked FROM settings ORDER BY layer, target, key"
DESKS_SQL = """
SELECT d.site, d.desk, d.team, coalesce(i.board, '') FROM desks d
LEFT JOIN inventory i ON i.site = d.site AND i.desk = d.desk ORDER BY d.site, d.desk
"""


def set_values(conn: psycopg.Connection[Any], layer: str, target: str, values: dict[str, Any], lock: bool) -> int:
    """Store a checked change; returns its version."""
    checked = check_change(layer, target, values, lock)
    with conn.transaction():
        version = int(conn.execute(_BUMP).fetchone()[0])  # type: ignore[index]
        for key, value in checked.items():
            conn.execute(_UPSERT, (layer, target, key, json.dumps(value), lock, version))
    return version


def unset(conn: psycopg.Connection[Any], layer: str, target: str, keys: list[str]) -> tuple[int, int]:
    """Remove keys from a layer: (how many were set, the version; unchanged when none was)."""
    unknown = [key for key in keys if key not in settings.POLICY_KEYS and key not in settings.UNIT_KEYS]
    if unknown:
        raise PolicyError(f"policy: unknown key {unknown[0]!r}")
    with conn.transaction():
        deleted = conn.execute(
            "DELETE FROM settings WHERE layer = %s AND target = %s AND key = ANY(%s)", (layer, target, keys)
        ).rowcount
        if deleted:
            version = int(conn.execute(_BUMP).fetchone()[0])  # type: ignore[index]
        else:
            version = int(conn.execute("SELECT version FROM settings_version").fetchone()[0])  # type: ignore[index]
    return deleted, version


def rows_of(result: list[tuple[Any, ...]]) -> list[Row]:
    return [Row(layer, target, key, value, bool(locked)) for layer, target, key, value, locked in result]


def desk_view(conn: psycopg.Connection[Any], desk: str) -> dict[str, Any] | None:
    """What `config show --desk` prints: central's policy for the desk and the desk's own report."""
    found = [row for row in conn.execute(DESKS_SQL).fetchall() if row[1] == desk]
    if not found:
        return None
    site, name, team, board = found[0]
    version = int(conn.execute("SELECT version FROM settings_version").fetchone()[0])  # type: ignore[index]
    policy = resolve(rows_of(conn.execute(ROWS_SQL).fetchall()), version, site=site, desk=name, team=team, board=board)
    reported = conn.execute(
        "SELECT report, extract(epoch FROM updated_at) FROM desk_settings WHERE site = %s AND desk = %s", (site, name)
    ).fetchone()
    return {
        "site": site,
        "desk": name,
        "team": team,
        "board": board,
        "central_version": version,
        "policy": policy,
        "report": reported[0] if reported else None,
        "reported_at": float(reported[1]) if reported else None,
    }


# ------------------------------------------------------------ the service in `offhook central run`


class PolicyService:
    """Publishes each desk's policy when it changes; keeps the desks' effective-settings reports."""

    def __init__(self, dsn: str, publish: Callable[[Publish], None], poll_s: float = POLL_S) -> None:
        self.dsn = dsn
        self.publish = publish
        self.poll_s = poll_s
        self.published: dict[tuple[str, str], tuple[str, int]] = {}  # (site, desk): (content, version)
        self.reports: dict[tuple[str, str], dict[str, Any]] = {}  # not yet written
        self.closed = False
        self._last_round: Any = None  # (version, rows, desks) last resolved: unchanged means nothing to do

    def report(self, site: str, desk: str, body: dict[str, Any]) -> None:
        """A desk's effective settings (Ingest.on_settings)."""
        self.reports[(site, desk)] = body
        if body.get("refused"):  # the retained policy was replaced by a bad one: publish the good one again
            log.warning("central: desk %s/%s refused a policy: %s", site, desk, str(body["refused"])[:200])
            self.published.pop((site, desk), None)

    async def run(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        while not self.closed:
            try:
                if conn is None:
                    conn = await pgstore.connect(self.dsn)
                    await conn.set_autocommit(True)
                await self._round(conn)
            except psycopg.Error as exc:
                log.warning("central: settings: database: %s", " ".join(str(exc).split())[:200])
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                conn = None
            await asyncio.sleep(self.poll_s)

    async def _round(self, conn: psycopg.AsyncConnection[Any]) -> None:
        reports, self.reports = self.reports, {}
        try:
            for (site, desk), body in sorted(reports.items()):
                await conn.execute(
                    "INSERT INTO desk_settings (site, desk, version, report) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (site, desk) DO UPDATE SET version = EXCLUDED.version, report = EXCLUDED.report,"
                    " updated_at = now()",
                    (site, desk, body["version"], json.dumps({k: v for k, v in body.items() if k != "v"})),
                )
        except psycopg.Error:
            self.reports = {**reports, **self.reports}  # kept for the next round
            raise
        version = int((await (await conn.execute("SELECT version FROM settings_version")).fetchone())[0])  # type: ignore[index]
        if version == 0:
            return  # nothing was ever set: no policy, every desk keeps its own config
        desks = await (await conn.execute(DESKS_SQL)).fetchall()
        this_round = (version, len(self.published), desks)
        if this_round == self._last_round:
            return
        rows = rows_of(await (await conn.execute(ROWS_SQL)).fetchall())
        for site, desk, team, board in desks:
            body = resolve(rows, version, site=site, desk=desk, team=team, board=board)
            content = json.dumps([body["layers"], body["locks"]], sort_keys=True)
            old = self.published.get((site, desk))
            if old is not None and old[0] == content:
                continue
            if old is not None and old[1] >= version:
                # Its content changed without a settings change (the desk moved team or board): a new
                # version, or the desk would ignore it as one it has.
                version = int((await (await conn.execute(_BUMP)).fetchone())[0])  # type: ignore[index]
                body["version"] = version
            self.published[(site, desk)] = (content, version)
            self.publish(Publish(S.topic(site, desk, S.POLICY), S.encode(body), retain=True))
            log.info("central: settings version %d published to %s/%s", version, site, desk)
        self._last_round = (version, len(self.published), desks)


# ------------------------------------------------------------ the IT page (web.py runs these in a thread)


def page_view(dsn: str, desk: str) -> dict[str, Any] | None:
    """GET /api/settings: one desk's view (as `config show --desk`), or every layer's rows without a desk."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        if desk:
            return desk_view(conn, desk)
        version = int(conn.execute("SELECT version FROM settings_version").fetchone()[0])  # type: ignore[index]
        rows = [row.__dict__ for row in rows_of(conn.execute(ROWS_SQL).fetchall())]
        desks = conn.execute("SELECT site, desk, version FROM desk_settings ORDER BY site, desk").fetchall()
        reported = [{"site": site, "desk": name, "version": int(v)} for site, name, v in desks]
        return {"central_version": version, "rows": rows, "desks": reported}


def page_change(dsn: str, body: Any) -> dict[str, Any]:
    """POST /api/settings {"layer", "target", "set": {key: value}, "unset": [key], "lock"}: checked
    before anything is stored; PolicyError (one line, the key named) otherwise."""
    if not isinstance(body, dict):
        raise PolicyError("send a JSON object")
    layer, target = str(body.get("layer", "")), str(body.get("target", ""))
    if layer not in settings.CENTRAL_LAYERS:
        raise PolicyError(f"layer must be one of {', '.join(settings.CENTRAL_LAYERS)}")
    values, keys, lock = body.get("set") or {}, body.get("unset") or [], bool(body.get("lock"))
    if not isinstance(values, dict) or not isinstance(keys, list) or bool(values) == bool(keys):
        raise PolicyError('send either "set": {key: value} or "unset": [key]')
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        if values:
            return {"version": set_values(conn, layer, target, values, lock)}
        removed, version = unset(conn, layer, target, [str(key) for key in keys])
        return {"version": version, "removed": removed}
