"""The daemon's update relay with a running daemon, its web softphone and a simulated unit (the real
firmware on the MicroPython VM): an update asked for during a call waits for the call and its wrap-up
to end, then goes through the daemon's own session (no lending); bad bundles are refused with the
reason before the unit is touched."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from offhook import config
from offhook import linkproto as L
from offhook.daemon import updates
from offhook.daemon.service import Daemon
from offhook.daemon.updates import UpdateRefused, admin_ok
from offhook.fleet import build
from offhook.softphone.web import WebSoftphone
from offhook.transport.serial import SerialTransport
from tests.fleet import keyring, simfleet


@pytest.fixture
def fleet_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pub = tmp_path / "fleet.pub"
    pub.write_bytes(
        keyring.key(0)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    monkeypatch.setenv("OFFHOOK_FLEET_PUBKEY", str(pub))
    return pub


def test_update_waits_for_the_call_and_wrap_up_then_goes_through_the_daemons_session(
    tmp_path: Path, fleet_key: Path
) -> None:
    async def scenario() -> None:
        async with simfleet.units(tmp_path, 1) as (unit,):
            cfg = config.validate({"unit": {"port": str(unit.port_link)}, "timers": {"wrap_up_s": 2}})
            phone = WebSoftphone()
            daemon = Daemon(cfg, phone, tmp_path / "state.json", transport_factory=SerialTransport)
            events: list[dict[str, Any]] = []
            daemon.listeners.append(events.append)
            lent: list[str] = []
            daemon.lend = lambda who: lent.append(who)  # type: ignore[method-assign,assignment,misc,return-value]
            task = asyncio.create_task(daemon.run())
            try:
                await asyncio.wait_for(daemon.unit_connected.wait(), 20)
                old = daemon.unit.fw if daemon.unit else ""
                session = daemon.session
                # the agent is on a call
                phone.report({"event": "incoming", "call": "c1", "peer": "sip:customer@x"})
                phone.report({"event": "established", "call": "c1", "peer": "sip:customer@x"})
                await asyncio.sleep(0.3)
                assert not daemon.desk.idle

                good = simfleet.sim_bundle()
                bad = {
                    "tampered": keyring.flip(good, len(good) - 40),
                    "other key": build.build_bundle(simfleet.sim_files(), simfleet.NEW, "sim", keyring.key(1)),
                    "downgrade": simfleet.sim_bundle("0.0.1"),
                    "wrong board": keyring.signed(version=simfleet.NEW, board="pico"),
                }
                reasons = {}
                for name, data in bad.items():
                    with pytest.raises(UpdateRefused) as refused:
                        daemon.updates.submit(data)
                    reasons[name] = str(refused.value)
                assert reasons["tampered"].startswith("sha256 mismatch")
                assert reasons["other key"].startswith("bad signature")
                assert reasons["downgrade"].startswith("downgrade refused")
                assert reasons["wrong board"] == "bundle is for board pico, this unit is sim"

                job = daemon.updates.submit(good)
                assert job.phase == "queued"
                await asyncio.sleep(1.5)
                assert job.phase == "queued", "never during a call"
                phone.report({"event": "closed", "call": "c1"})
                await asyncio.sleep(0.5)
                assert daemon.desk.agent == L.AGENT_WRAP_UP and job.phase == "queued", "never during wrap-up"
                await asyncio.wait_for(job.done.wait(), 90)
                assert (job.phase, job.reason) == ("confirmed", "")
                assert daemon.session is session, "the same session throughout: no hand-over of the port"
                assert not lent
                assert daemon.unit is not None and daemon.unit.fw == simfleet.NEW != old
                phases = [e["phase"] for e in events if e["event"] == "update"]
                assert phases[0] == "queued" and phases[-1] == "confirmed"
                assert "verified" in phases and "receiving" in phases
                assert phases.index("verified") < phases.index("receiving") < len(phases) - 1
                # the call was never disturbed: the daemon sent its softphone no command
                assert not any(e["event"] == "command_failed" for e in events)
                # the unit shows the desk's state again under the new firmware
                await asyncio.sleep(0.5)
                assert unit.last_state is not None and unit.last_state[1] == L.AGENT_AVAILABLE
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(asyncio.wait_for(scenario(), 180))


def test_no_fleet_key_refuses_every_update(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OFFHOOK_FLEET_PUBKEY", str(tmp_path / "absent.pub"))
    assert updates.fleet_key() is None
    with pytest.raises(UpdateRefused, match="no fleet public key"):
        updates.check_bundle(b"OHB1", None, "sim", "0.1.0")


def test_admin_secret_is_checked_against_its_hash(tmp_path: Path) -> None:
    import hashlib

    hashed = tmp_path / "admin.sha256"
    hashed.write_text(hashlib.sha256(b"s3cret-admin").hexdigest() + "\n")
    assert admin_ok("s3cret-admin\n", hashed)
    assert not admin_ok("s3cret-admin2", hashed)
    assert not admin_ok("", hashed)
    assert not admin_ok("s3cret-admin", tmp_path / "none")


def test_offhook_flash_wait_hands_the_bundle_to_the_daemon_and_follows_it_past_the_call(
    tmp_path: Path, fleet_key: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import hashlib

    from offhook.api.server import ApiServer
    from offhook.api.tokens import TokenStore
    from offhook.cli import main

    (tmp_path / "admin.sha256").write_text(hashlib.sha256(b"root-only-secret").hexdigest())
    monkeypatch.setenv("OFFHOOK_ADMIN_HASH", str(tmp_path / "admin.sha256"))
    bundle = tmp_path / "fw.ohb"
    bundle.write_bytes(simfleet.sim_bundle())

    async def scenario() -> tuple[int, int, int, list[str]]:
        async with simfleet.units(tmp_path, 1) as (unit,):
            cfg = config.validate({"unit": {"port": str(unit.port_link)}, "timers": {"wrap_up_s": 1}})
            phone = WebSoftphone()
            daemon = Daemon(cfg, phone, tmp_path / "state.json", transport_factory=SerialTransport)
            task = asyncio.create_task(daemon.run())
            api = ApiServer(daemon, TokenStore(), 0)
            try:
                await asyncio.wait_for(daemon.unit_connected.wait(), 20)
                await api.start()
                config.default_config_path().parent.mkdir(parents=True, exist_ok=True)
                config.default_config_path().write_text(f"[api]\nport = {api.port}\n")
                # the user's own API token is not enough: no admin secret, no update
                monkeypatch.setenv("OFFHOOK_ADMIN_SECRET_FILE", str(tmp_path / "unreadable"))
                no_admin = await asyncio.to_thread(main, ["flash", str(bundle)])
                (tmp_path / "wrong").write_text("guess\n")
                monkeypatch.setenv("OFFHOOK_ADMIN_SECRET_FILE", str(tmp_path / "wrong"))
                wrong = await asyncio.to_thread(main, ["flash", str(bundle)])
                (tmp_path / "secret").write_text("root-only-secret\n")
                monkeypatch.setenv("OFFHOOK_ADMIN_SECRET_FILE", str(tmp_path / "secret"))
                phone.report({"event": "incoming", "call": "c1", "peer": "sip:customer@x"})
                phone.report({"event": "established", "call": "c1", "peer": "sip:customer@x"})
                await asyncio.sleep(0.3)
                flashing = asyncio.create_task(asyncio.to_thread(main, ["flash", str(bundle), "--wait"]))
                await asyncio.sleep(2.0)
                assert not flashing.done(), "it waits for the call instead of failing"
                phases = [job.phase for job in daemon.updates.jobs]
                assert phases == ["queued"]
                phone.report({"event": "closed", "call": "c1"})
                code = await asyncio.wait_for(flashing, 90)
                return no_admin, wrong, code, [str(daemon.unit.fw if daemon.unit else "")]
            finally:
                await api.stop()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    no_admin, wrong, code, (fw,) = asyncio.run(asyncio.wait_for(scenario(), 180))
    err = capsys.readouterr().err
    assert no_admin == 2 and "cannot read the admin secret" in err
    assert wrong == 1 and "the daemon refused the update: update needs the admin secret" in err
    assert code == 0, err
    assert fw == simfleet.NEW
    lines = [line for line in err.splitlines() if line.startswith("update 1 ")]
    assert lines[0] == f"update 1 ({simfleet.NEW}): queued" and lines[-1] == f"update 1 ({simfleet.NEW}): confirmed"
    assert any(": receiving" in line for line in lines)


@contextlib.asynccontextmanager
async def daemon_with_unit(tmp_path: Path) -> Any:
    """A running daemon (web softphone, no call) owning one simulated unit; yields (daemon, unit, events)."""
    async with simfleet.units(tmp_path, 1) as (unit,):
        cfg = config.validate({"unit": {"port": str(unit.port_link)}})
        daemon = Daemon(cfg, WebSoftphone(), tmp_path / "state.json", transport_factory=SerialTransport)
        events: list[dict[str, Any]] = []
        daemon.listeners.append(events.append)
        task = asyncio.create_task(daemon.run())
        try:
            await asyncio.wait_for(daemon.unit_connected.wait(), 20)
            yield daemon, unit, events
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def test_a_release_that_crashes_is_reported_rolled_back(tmp_path: Path, fleet_key: Path) -> None:
    async def scenario() -> tuple[str, str, str]:
        async with daemon_with_unit(tmp_path) as (daemon, _unit, _events):
            job = daemon.updates.submit(simfleet.sim_bundle("0.3.0", crash=True))
            await asyncio.wait_for(job.done.wait(), 120)
            await asyncio.sleep(0.5)
            return job.phase, job.reason, daemon.unit.fw if daemon.unit else ""

    phase, reason, fw = asyncio.run(asyncio.wait_for(scenario(), 180))
    assert phase == "rolled back" and reason.startswith("rolled back to 0.1.0: rolled back from slot a"), reason
    assert fw == "0.1.0"


def test_a_unit_whose_port_vanishes_at_its_reset_is_followed_through_the_daemons_next_session(
    tmp_path: Path, fleet_key: Path
) -> None:
    """A real unit re-enumerates when it resets: the daemon's session ends and a new one starts;
    the relay reads the outcome from the new session's HELLO."""

    async def scenario() -> tuple[str, str, list[str]]:
        async with daemon_with_unit(tmp_path) as (daemon, unit, events):
            first = daemon.session

            def on_event(message: dict[str, Any]) -> None:
                if message.get("event") == "update" and message.get("phase") == "rebooting":
                    asyncio.get_running_loop().create_task(replug())

            async def replug() -> None:
                await unit.unplug()
                await asyncio.sleep(0.5)
                await unit.replug()

            daemon.listeners.append(on_event)
            job = daemon.updates.submit(simfleet.sim_bundle())
            await asyncio.wait_for(job.done.wait(), 120)
            assert daemon.session is not first, "the port vanished: a new session"
            return job.phase, job.reason, [e["phase"] for e in events if e["event"] == "update"]

    phase, reason, phases = asyncio.run(asyncio.wait_for(scenario(), 180))
    assert (phase, reason) == ("confirmed", ""), phases
