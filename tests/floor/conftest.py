"""Fixtures of the floor's tests: one PostgreSQL server per session (a fresh database per test),
and a fresh Mosquitto with `offhook central init`'s files per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.floor.rig import Mosquitto, Postgres, postgres_server

DESKS = ["desk-01", "desk-02", "desk-03", "desk-04"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def db(postgres: Postgres) -> str:
    """A fresh, empty database on the session's server (its DSN)."""
    return postgres.new_database()


@pytest.fixture
def mqtt() -> Iterator[Mosquitto]:
    server = Mosquitto(DESKS)
    server.start()
    try:
        yield server
    finally:
        server.close()
