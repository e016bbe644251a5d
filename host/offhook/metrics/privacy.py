"""Customer numbers are personal data: keyed hashes by default, a retention period, a purge.

Why a keyed hash (HMAC-SHA256 with a per-install secret salt) and not a plain hash:
phone numbers are few enough to enumerate, so an unkeyed hash is reversible by brute
force. With the salt (32 random bytes in a 0600 file beside the store, never logged),
the same number still gives the same value on this install (repeat callers can be
counted), but a copied database or export alone reveals nothing.

Policies: ``hash`` (default), ``plain`` (only where the site's privacy notice allows
it) and ``drop`` (no number stored at all).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from pathlib import Path

SALT_NAME = "number-salt"
DEFAULT_NUMBERS = "hash"
NUMBER_POLICIES = ("hash", "plain", "drop")
DEFAULT_RETENTION_DAYS = 365.0
HASH_PREFIX = "h1:"  # lets a reader tell a hash from a number, and a future scheme from this one


class NumberPolicy:
    """Turns a customer number into what the store keeps, following the configured policy."""

    def __init__(self, policy: str, salt_path: Path) -> None:
        if policy not in NUMBER_POLICIES:
            raise ValueError(f"number policy must be one of {', '.join(NUMBER_POLICIES)}, not {policy!r}")
        self.policy = policy
        self.salt_path = salt_path
        self._salt: bytes | None = None

    def __repr__(self) -> str:  # never show the salt
        return f"NumberPolicy({self.policy!r}, {str(self.salt_path)!r})"

    def store(self, number: str | None) -> str | None:
        if number is None or self.policy == "drop":
            return None
        normalised = normalise(number)
        if not normalised:
            return None
        if self.policy == "plain":
            return normalised
        if self._salt is None:
            self._salt = load_or_create_salt(self.salt_path)
        return HASH_PREFIX + hmac.new(self._salt, normalised.encode(), hashlib.sha256).hexdigest()


def normalise(number: str) -> str:
    """``sip:+49 30 1234@host`` and ``+49301234`` are the same customer: keep the user part's digits and +."""
    user = number.strip()
    user = re.sub(r"^(sips?|tel):", "", user, flags=re.IGNORECASE).split("@", 1)[0].split(";", 1)[0]
    digits = re.sub(r"[^0-9+*#]", "", user)
    return digits or user.lower()


def load_or_create_salt(path: Path) -> bytes:
    """The install's secret salt; created once with mode 0600 (O_EXCL, so two writers agree)."""
    try:
        salt = path.read_bytes()
        if len(salt) >= 32:
            return salt
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    salt = secrets.token_bytes(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, salt)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, fails if another process created it first
    except FileExistsError:
        salt = path.read_bytes()
    finally:
        tmp.unlink()
    return salt


def purge(
    conn: sqlite3.Connection,
    *,
    older_than_days: float,
    numbers_only: bool = False,
    now: float | None = None,
) -> int:
    """Delete calls (or only their customer numbers) whose ring started more than N days ago.

    Calls in progress are never touched. Returns how many calls were purged. With
    ``secure_delete`` on (see store.connect) the removed bytes are overwritten; a
    checkpoint then moves them out of the WAL as well.
    """
    if older_than_days < 0:
        raise ValueError("the retention period cannot be negative")
    cutoff = (time.time() if now is None else now) - older_than_days * 86400.0
    conn.execute("BEGIN IMMEDIATE")
    try:
        if numbers_only:
            cursor = conn.execute(
                "UPDATE calls SET number = NULL WHERE ring_wall < ? AND completed = 1 AND number IS NOT NULL", (cutoff,)
            )
        elif _has_floor_outbox(conn):
            # A call the floor has not acknowledged yet stays until it has (offhook.floor: exactly once).
            cursor = conn.execute(
                "DELETE FROM calls WHERE ring_wall < ? AND completed = 1 AND NOT (floor_summary IS NOT summary"
                " OR floor_seq > (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'floor_acked'))",
                (cutoff,),
            )
        else:
            cursor = conn.execute("DELETE FROM calls WHERE ring_wall < ? AND completed = 1", (cutoff,))
        count = cursor.rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return count


def _has_floor_outbox(conn: sqlite3.Connection) -> bool:
    """Whether this store feeds a floor (its outbox cursor exists; schema version 3 on)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
    if "floor_seq" not in columns:
        return False
    return conn.execute("SELECT 1 FROM meta WHERE key = 'floor_acked'").fetchone() is not None
