"""No customer number in the daemon's log, at the verbosity the shipped systemd unit uses (-v)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from offhook import config
from offhook.commands.daemon import log_handler, setup_logging
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


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_exception_logged_with_a_number_leaves_no_number_in_the_log(as_json: bool) -> None:
    """The traceback's text is the exception's message too: a URI or a raw softphone answer in it."""
    stream = io.StringIO()
    log = logging.getLogger("offhook.softphone.baresip.test")
    log.propagate = False
    log.addHandler(log_handler(as_json, stream))
    try:
        try:
            raise ValueError(f"unexpected answer from baresip: peeruri=sip:{NUMBER}@pbx.example")
        except ValueError:
            log.exception("softphone answer not understood")
        log.warning("stack follows for tel:%s", NUMBER, stack_info=True)
    finally:
        log.handlers.clear()
    written = stream.getvalue()
    assert "softphone answer not understood" in written and "ValueError" in written  # still useful
    assert "Stack (most recent call last)" in written or '"stack"' in written
    assert "4930123456" not in written
