"""No customer number in the daemon's log, at the verbosity the shipped systemd unit uses (-v)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from offhook import config
from offhook.commands.daemon import setup_logging
from offhook.daemon.service import Daemon
from offhook.softphone.base import EventKind, SoftphoneEvent
from offhook.softphone.web import WebSoftphone

NUMBER = "+4930123456"


@pytest.fixture
def daemon_log(capfd: pytest.CaptureFixture[str]) -> Iterator[pytest.CaptureFixture[str]]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging(1, False)  # `offhook daemon -v`, as offhook-daemon.service runs it
    try:
        yield capfd
    finally:
        root.handlers, root.level = saved[0], saved[1]


def test_a_call_from_a_number_leaves_no_number_in_the_verbose_log(
    tmp_path: Path, daemon_log: pytest.CaptureFixture[str]
) -> None:
    daemon = Daemon(config.validate({}), WebSoftphone(), tmp_path / "state.json")
    peer = f"sip:{NUMBER}@pbx.example"

    async def a_call() -> None:
        for kind in (EventKind.INCOMING, EventKind.ESTABLISHED, EventKind.CLOSED):
            await daemon.apply(daemon.desk.softphone_event(SoftphoneEvent(kind, "c1", peer, "inbound"), 1.0))
        # A raw softphone message in an error line (the baresip adapter logs unreadable ones).
        logging.getLogger("offhook.softphone.baresip").error(
            "baresip event without a type: %.120r", {"param": peer, "peeruri": f"tel:{NUMBER}"}
        )

    asyncio.run(a_call())
    log = daemon_log.readouterr().err
    assert "incoming" in log and "established" in log and "c1" in log  # the log is still useful
    assert "4930123456" not in log
