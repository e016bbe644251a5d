"""The update transfer (flasher.Update) against a scripted unit in memory: lost chunks resumed from
UPDATE_STATUS or, for an older updater, from the NACK's text; refusals; a rollback; a HELLO that
crosses the flasher's; and the same transfer on a link that was already open and running."""

from __future__ import annotations

import asyncio
import os

import pytest

from offhook import linkproto as L
from offhook.fleet import flasher
from offhook.unitlink import Message, UnitLink
from tests.fleet.scripted_unit import BOARD, ScriptedUnit, Wire, wired

BUNDLE = os.urandom(flasher.CHUNK * 20 + 100)
MANIFEST = {"version": "2.0.0", "board": BOARD}
LOST = flasher.CHUNK * 3


def flash(monkeypatch: pytest.MonkeyPatch, unit: ScriptedUnit) -> tuple[flasher.FlashResult, list[str]]:
    phases: list[str] = []
    with wired(monkeypatch, unit):
        result = asyncio.run(
            asyncio.wait_for(flasher.Flasher(unit.path, BUNDLE, MANIFEST, lambda *a: phases.append(a[3])).run(0), 20)
        )
    return result, phases


def test_a_lost_chunk_is_resent_from_where_update_status_says(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = ScriptedUnit(lose_chunk_at=LOST)  # its NACK text is not "expected offset N": only the status says
    result, phases = flash(monkeypatch, unit)
    assert (result.result, result.old, result.tries) == ("ok", "1.0.0", 1), result.reason
    assert f"rewind {LOST}" in result.events
    assert any(s.get("resume") == LOST for s in unit.statuses) and unit.nacks[0] == f"chunk ahead of {LOST}"
    assert bytes(unit.received) == BUNDLE
    assert [p for p in phases if p != "sending"] == ["verifying", "rebooting", "confirming", "ok"]


def test_a_refused_chunk_is_resent_even_when_the_resume_status_is_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last chunk of the bundle is refused (the one before it was lost) and the unit's "resume"
    status does not arrive: the window empties all the same. The flasher must not take that for
    "all delivered" and commit a bundle the unit does not have in full (seen under load in CI as
    "truncated bundle"): a refused chunk is sent again."""
    unit = ScriptedUnit(lose_chunk_at=len(BUNDLE) - 100 - flasher.CHUNK, resume_lost=True)
    result, _ = flash(monkeypatch, unit)
    assert (result.result, result.tries) == ("ok", 1), result.reason
    assert bytes(unit.received) == BUNDLE and not [s for s in unit.statuses if s.get("phase") == "failed"]


def test_an_older_updater_says_where_to_resume_only_in_the_nack(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safe-mode loader's /lib/updater.py is never updated over the link: the documented fallback."""
    unit = ScriptedUnit(resume=False, lose_chunk_at=LOST)
    result, _ = flash(monkeypatch, unit)
    assert result.result == "ok", result.reason
    assert f"rewind {LOST}" in result.events and unit.nacks[0] == f"expected offset {LOST}"
    assert not any("resume" in s for s in unit.statuses) and bytes(unit.received) == BUNDLE


@pytest.mark.parametrize("resume", [True, False])
def test_a_refused_chunk_fails_the_update_with_the_units_reason(monkeypatch: pytest.MonkeyPatch, resume: bool) -> None:
    unit = ScriptedUnit(resume=resume, refuse_at=flasher.CHUNK * 2)
    result, _ = flash(monkeypatch, unit)
    assert (result.result, result.reason, result.tries) == ("failed", "sha256 mismatch in /app.mpy", 1)


def test_a_rollback_at_boot_fails_with_what_the_boot_loader_said(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = flash(monkeypatch, ScriptedUnit(rolls_back=True))
    assert result.result == "failed"
    assert result.reason == "rolled back to 1.0.0: rolled back from slot b: crashed 3 times"


def test_a_unit_that_stops_answering_ends_the_try_it_was_waiting_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Silent from UPDATE_COMMIT on: the link gives up on that frame, and the update, waiting for
    the switch (no timeout of its own: a call may defer it for hours), fails with it, to be retried."""
    result, _ = flash(monkeypatch, ScriptedUnit(deaf_from=L.UPDATE_COMMIT))
    assert result.result == "failed" and result.reason.endswith("did not acknowledge UPDATE_COMMIT"), result.reason


def test_flash_waits_for_the_answer_to_its_own_hello(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit boots as `offhook flash` opens it: the flasher's HELLO is lost, the boot HELLO crosses
    it, and the unit hears nothing for longer than one retry. The flasher goes on only after the
    answer to its own HELLO, so no copy of that HELLO reaches the unit during the transfer (it would
    restart the unit's session and its chunks would be refused)."""
    unit = ScriptedUnit(boot_deaf_s=1.5)
    result, _ = flash(monkeypatch, unit)
    assert result.result == "ok", result.reason
    types = [frame.type for frame in unit.heard]
    begin = types.index(L.UPDATE_BEGIN)
    assert L.HELLO in types[:begin] and L.HELLO not in types[begin : types.index(L.UPDATE_COMMIT)], types


def test_a_crossed_boot_hello_is_not_taken_for_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The boot HELLO says "trial"; by the time the unit answers, it has confirmed the version the
    bundle carries: up to date, nothing sent."""
    unit = ScriptedUnit(fw="2.0.0", boot_deaf_s=1.5, boot_hello={"health": "trial"})
    result, _ = flash(monkeypatch, unit)
    assert (result.result, result.old) == ("up to date", "2.0.0")
    assert L.UPDATE_BEGIN not in [frame.type for frame in unit.heard]


def test_the_update_runs_on_a_link_already_open_and_running() -> None:
    """As a daemon would relay it: its own session, its own handler passing the update's messages on."""

    async def scenario() -> tuple[flasher.FlashResult, list[Message], ScriptedUnit]:
        unit = ScriptedUnit(lose_chunk_at=LOST)
        others: list[Message] = []
        update: flasher.Update | None = None

        def handler(message: Message) -> None:
            others.append(message)
            if update is not None:
                update.on_message(message)

        link = UnitLink(Wire(unit), handler=handler, retry_ms=flasher.RETRY_MS, max_tries=flasher.MAX_TRIES)
        await link.connect(2)
        async with link.running():
            await link.send_state(L.CALL_IDLE, L.AGENT_AVAILABLE, 0, 0)
            result = flasher.FlashResult(unit="?", path=unit.path, new="2.0.0")
            update = flasher.Update(link, BUNDLE, MANIFEST, result, lambda done, phase: None)
            await update.run()
            await link.send_state(L.CALL_IDLE, L.AGENT_AVAILABLE, 0, 0)  # the session goes on
            assert await link.until(lambda: not link.link.pending, 2)
        link.close()
        return result, others, unit

    result, others, unit = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert (result.result, result.old) == ("ok", "1.0.0") and bytes(unit.received) == BUNDLE
    assert [f.type for f in unit.heard if f.type in (L.STATE, L.HELLO)] == [L.HELLO, L.STATE, L.HELLO, L.STATE]
    assert any(isinstance(m, L.Frame) and m.type == L.UPDATE_STATUS for m in others)
