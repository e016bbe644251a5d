"""Who may use central's web side: role tokens and the sessions pages keep.

- A token is shown once, when it is made (``offhook central token create``); PostgreSQL keeps only
  its SHA-256. A token is 32 random bytes, so a plain hash is enough (nothing to brute-force, no
  need for a slow KDF), and the lookup is by the hash itself: no timing leak from comparing.
- A role says what a token may do: ``supervisor`` (live state and figures: the wallboard) or
  ``it`` (the inventory, and later rollouts). Neither implies the other.
- A page logs in with its token once and then holds a session (a cookie: HttpOnly, Secure,
  SameSite=Strict), stored hashed as well and bound to its token: revoking the token ends its
  sessions at their next request, and live WebSockets are rechecked every few seconds.
- Nothing here logs a token or a session id: log lines name the token by its name.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

SUPERVISOR, IT = "supervisor", "it"
ROLES = (SUPERVISOR, IT)
PREFIX = "ofh_"  # recognisable in a leaked paste; secret scanners can match it
SESSION_S = 12 * 3600  # a shift
NAME_MAX = 64

# What each role may reach (web.py asks ``allowed(role, what)``).
GRANTS: dict[str, frozenset[str]] = {
    SUPERVISOR: frozenset({"live", "figures"}),
    IT: frozenset({"inventory", "inventory_admin"}),
}


class AuthError(ValueError):
    """A refused token or bad token request (the text never contains the token)."""


@dataclass(frozen=True)
class Principal:
    """Whom a request acts for: the token's id, name and role."""

    token_id: int
    name: str
    role: str


def allowed(role: str, what: str) -> bool:
    return what in GRANTS.get(role, frozenset())


def new_secret(prefix: str = PREFIX) -> str:
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    return role


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX or not name.isprintable():
        raise AuthError(f"a token's name is 1-{NAME_MAX} printable characters")
    return name


# ---------------------------------------------------------------- PostgreSQL (migration 2 makes the tables)


@dataclass(frozen=True)
class TokenRow:
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def create_token(conn: psycopg.Connection[Any], role: str, name: str) -> tuple[str, TokenRow]:
    """A new token (its secret, to show once) and its row."""
    role, name = check_role(role), check_name(name)
    secret = new_secret()
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, digest) VALUES (%s, %s, %s)"
        " RETURNING id, name, role, created_at, revoked_at, last_used_at",
        (name, role, digest(secret)),
    ).fetchone()
    assert row is not None
    return secret, TokenRow(*row)


def revoke_token(conn: psycopg.Connection[Any], which: str) -> list[TokenRow]:
    """Revoke the live token(s) with this id or name; their sessions go with them."""
    key = int(which) if which.isdigit() else None
    rows = conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE revoked_at IS NULL AND (id = %s OR name = %s)"
        " RETURNING id, name, role, created_at, revoked_at, last_used_at",
        (key, which),
    ).fetchall()
    conn.execute("DELETE FROM web_sessions WHERE token_id = ANY(%s)", ([r[0] for r in rows],))
    return [TokenRow(*r) for r in rows]


def list_tokens(conn: psycopg.Connection[Any]) -> list[TokenRow]:
    rows = conn.execute(
        "SELECT id, name, role, created_at, revoked_at, last_used_at FROM api_tokens ORDER BY id"
    ).fetchall()
    return [TokenRow(*r) for r in rows]


async def principal_of_token(conn: psycopg.AsyncConnection[Any], secret: str) -> Principal | None:
    if not secret.startswith(PREFIX) or len(secret) > 128:
        return None
    cur = await conn.execute(
        "UPDATE api_tokens SET last_used_at = now() WHERE digest = %s AND revoked_at IS NULL RETURNING id, name, role",
        (digest(secret),),
    )
    row = await cur.fetchone()
    return Principal(*row) if row else None


async def open_session(conn: psycopg.AsyncConnection[Any], who: Principal) -> str:
    session = new_secret("s_")
    await conn.execute(
        "INSERT INTO web_sessions (digest, token_id, expires_at) VALUES (%s, %s, now() + make_interval(secs => %s))",
        (digest(session), who.token_id, SESSION_S),
    )
    await conn.execute("DELETE FROM web_sessions WHERE expires_at < now()")
    return session


async def principal_of_session(conn: psycopg.AsyncConnection[Any], session: str) -> Principal | None:
    if not session.startswith("s_") or len(session) > 128:
        return None
    cur = await conn.execute(
        "SELECT t.id, t.name, t.role FROM web_sessions s JOIN api_tokens t ON t.id = s.token_id"
        " WHERE s.digest = %s AND s.expires_at > now() AND t.revoked_at IS NULL",
        (digest(session),),
    )
    row = await cur.fetchone()
    return Principal(*row) if row else None


async def close_session(conn: psycopg.AsyncConnection[Any], session: str) -> None:
    await conn.execute("DELETE FROM web_sessions WHERE digest = %s", (digest(session),))


async def still_valid(conn: psycopg.AsyncConnection[Any], token_ids: list[int]) -> set[int]:
    """Which of these tokens are not revoked (live WebSockets are rechecked with it)."""
    cur = await conn.execute("SELECT id FROM api_tokens WHERE id = ANY(%s) AND revoked_at IS NULL", (token_ids,))
    return {int(r[0]) for r in await cur.fetchall()}
