"""Floor-wide settings end to end: `offhook central config` → PostgreSQL → central publishes → real
daemons (simulated units: the real firmware on the MicroPython VM) apply them when idle and report
what is in effect, with its source. Real Mosquitto, PostgreSQL and central."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from offhook import config
from offhook import linkproto as L
from offhook.daemon.service import Daemon
from offhook.floor import client as floor_client
from offhook.floor import schema as S
from offhook.floor.client import FloorClient
from offhook.floor.policy import Row, check_change, resolve
from offhook.metrics.sink import MetricsSink
from offhook.metrics.store import CallRecorder
from offhook.settings import PolicyError, check_policy
from offhook.sim.unit import SimulatedUnit
from offhook.softphone.web import WebSoftphone
from tests.floor.rig import REPO_ROOT, SITE, CentralTask, Mosquitto, query, run, until


class Page:
    name = "test page"

    def post(self, message: dict[str, Any]) -> None:
        pass


class RealDesk:
    """A daemon on a simulated unit with its floor client; ``local`` is its TOML as written."""

    def __init__(
        self, mqtt: Mosquitto, name: str, team: str, workdir: Path, local: dict[str, Any], page: Any = None
    ) -> None:
        self.page = page or Page()
        self.name, self.team, self.mqtt, self.workdir = name, team, mqtt, workdir / name
        self.unit = SimulatedUnit(f"0ff0514d0000f10{name[-1]}", self.workdir / "flash")
        self.local = local
        self.softphone = WebSoftphone()
        self.recorder = CallRecorder(self.workdir / "data" / "metrics.sqlite3")
        self.daemon: Daemon | None = None
        self.client: FloorClient | None = None
        self.tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        await self.unit.start()
        cfg = config.validate({**self.local, "unit": {"port": str(self.unit.port_link)}, "softphone": {"kind": "api"}})
        sink = MetricsSink(self.recorder, agent=f"agent-{self.name}", tz="UTC")
        self.daemon = Daemon(cfg, self.softphone, self.workdir / "state.json", recorder=sink, local_settings=self.local)
        self.tasks.append(asyncio.create_task(self.daemon.run()))
        self.client = floor_client.attach(
            self.daemon, self.mqtt.floor_config(self.name, self.team), self.recorder, ack_timeout_s=1.0
        )
        await asyncio.wait_for(self.daemon.unit_connected.wait(), 30)
        self.softphone.register(self.page)

    def call(self, event: str, call: str) -> None:
        self.softphone.report({"event": event, "call": call, "peer": "+4930555000111"})

    def effective(self, key: str) -> tuple[Any, str, bool]:
        assert self.daemon is not None
        chosen = self.daemon.settings_report()["effective"][key]
        return chosen["value"], chosen["source"], chosen["locked"]

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close(goodbye=False)
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.unit.stop()


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "offhook.cli", "central", "config", *args, "--db", db]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)


def reported(db: str, desk: str) -> dict[str, Any]:
    rows = query(db, "SELECT report FROM desk_settings WHERE desk = %s", desk)
    return rows[0][0] if rows else {}


def test_team_change_lock_bad_values_forgery_and_catch_up_on_real_daemons(
    db: str, mqtt: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        desks = [
            RealDesk(mqtt, "desk-01", "complaints", tmp_path, {"timers": {"wrap_up_s": 1}}),
            RealDesk(mqtt, "desk-02", "complaints", tmp_path, {}),
            RealDesk(mqtt, "desk-03", "sales", tmp_path, {"timers": {"hold_reminder_s": 300}}),
        ]
        one, two, three = desks
        refusals: list[tuple[str, str]] = []
        async with CentralTask(mqtt, db) as central:
            keep = central.policy.report

            def seen(site: str, desk: str, body: dict[str, Any]) -> None:
                if body.get("refused"):
                    refusals.append((desk, body["refused"]))
                keep(site, desk, body)

            central.ingest.on_settings = seen
            try:
                await asyncio.gather(*(desk.start() for desk in desks))
                await until(lambda: len(query(db, "SELECT 1 FROM desk_settings")) == 3, 15)
                assert one.daemon and two.daemon and three.daemon

                # A call in progress at desk-01 when its team's wrap-up changes.
                one.call("incoming", "c1@pbx")
                one.call("established", "c1@pbx")
                await until(lambda: one.daemon is not None and not one.daemon.desk.idle, 5)
                result = await asyncio.to_thread(cli, db, "set", "--team", "complaints", "wrap_up_s=60")
                assert result.returncode == 0, result.stderr
                await until(lambda: two.effective("wrap_up_s") == (60, "team", False), 10)
                await until(
                    lambda: reported(db, "desk-02").get("effective", {}).get("wrap_up_s", {}).get("value") == 60
                )
                await until(lambda: one.daemon is not None and one.daemon.settings_report()["pending"] is not None, 5)
                assert one.effective("wrap_up_s") == (1, "local", False)  # mid-call: not yet
                await asyncio.sleep(1.0)
                assert three.effective("wrap_up_s")[1] == "default"  # another team: untouched
                assert all(
                    chosen["source"] != "team" for chosen in three.daemon.settings_report()["effective"].values()
                )
                one.call("closed", "c1@pbx")
                await until(lambda: one.daemon is not None and one.daemon.desk.agent == L.AGENT_WRAP_UP, 5)
                assert one.daemon.desk.timers.wrap_up_s == 1  # the wrap-up keeps the timer it started with
                await until(lambda: one.effective("wrap_up_s") == (60, "team", False), 10)  # idle after 1 s
                await until(lambda: reported(db, "desk-01").get("pending", 0) is None, 5)
                shown = await asyncio.to_thread(cli, db, "show", "--desk", "desk-01")
                assert shown.returncode == 0, shown.stderr
                line = next(line for line in shown.stdout.splitlines() if line.split()[:1] == ["wrap_up_s"])
                assert line.split()[1:3] == ["60", "team"]

                # A site lock overrides desk-03's local TOML, and says so.
                result = await asyncio.to_thread(cli, db, "set", "--site", SITE, "--lock", "hold_reminder_s=90")
                assert result.returncode == 0, result.stderr
                await until(lambda: three.effective("hold_reminder_s") == (90, "site", True), 10)
                assert three.daemon.desk.timers.hold_reminder_s == 90
                assert "hold_reminder_s is locked by the site: its value overrides the local config" in caplog.text
                await until(lambda: reported(db, "desk-03")["effective"]["hold_reminder_s"]["locked"] is True, 5)
                shown = await asyncio.to_thread(cli, db, "show", "--desk", "desk-03")
                line = next(line for line in shown.stdout.splitlines() if line.split()[:1] == ["hold_reminder_s"])
                assert line.split()[1:3] == ["90", "site"] and "locked" in line

                # Bad values are refused at central, the key named, and change nothing.
                version = query(db, "SELECT version FROM settings_version")[0][0]
                for value, message in [
                    ("wrap_up_s=long", "timers.wrap_up_s must be a number"),
                    ("wrap_up_s=99999", "timers.wrap_up_s = 99999 is above the maximum"),
                    ("hold_reminder_s=nan", "timers.hold_reminder_s = nan is not a finite number"),
                    ("coffee_s=5", "unknown key 'coffee_s'"),
                ]:
                    result = await asyncio.to_thread(cli, db, "set", "--team", "complaints", value)
                    assert result.returncode == 2 and message in result.stderr, (value, result.stderr)
                    assert len(result.stderr.strip().splitlines()) == 1
                assert query(db, "SELECT version FROM settings_version")[0][0] == version

                # A forged policy (a bad value, a higher version) is refused at the desk: the last good stays.
                forged = {"version": version + 100, "layers": {"team": {"wrap_up_s": "long"}}, "locks": {}}
                publish = central._acks.put_nowait
                publish(floor_client.Publish(S.topic(SITE, "desk-02", S.POLICY), S.encode(forged), retain=True))
                await until(lambda: any(desk == "desk-02" for desk, _ in refusals), 10)
                assert "timers.wrap_up_s must be a number" in refusals[0][1]
                assert two.client is not None and two.client.counters["policy_refused"] == 1
                assert two.effective("wrap_up_s") == (60, "team", False) and two.daemon.desk.timers.wrap_up_s == 60
                assert "policy refused, the last good settings stay" in caplog.text
                await until(lambda: reported(db, "desk-02").get("refused") is None, 10)  # central re-published

                # desk-02 offline during a change gets it on reconnect.
                assert two.client is not None
                await two.client.close(goodbye=True)
                result = await asyncio.to_thread(cli, db, "set", "--team", "complaints", "wrap_up_s=45")
                assert result.returncode == 0
                await until(lambda: one.effective("wrap_up_s") == (45, "team", False), 10)
                assert two.effective("wrap_up_s") == (60, "team", False)
                two.client.closed = False
                two.client.task = asyncio.create_task(two.client.run())
                await until(lambda: two.effective("wrap_up_s") == (45, "team", False), 10)
                result = await asyncio.to_thread(cli, db, "unset", "--team", "complaints", "wrap_up_s")
                assert result.returncode == 0
                await until(lambda: two.effective("wrap_up_s") == (30, "default", False), 10)
            finally:
                await asyncio.gather(*(desk.stop() for desk in desks), return_exceptions=True)

    run(scenario(), 150)


def test_central_resolves_each_desks_layers_and_a_sites_lock_wins() -> None:
    rows = [
        Row("team", "complaints", "wrap_up_s", 60, False),
        Row("team", "sales", "wrap_up_s", 20, False),
        Row("site", "hq", "hold_reminder_s", 90, True),
        Row("team", "complaints", "hold_reminder_s", 80, True),
        Row("desk", "desk-01", "ring_timeout_s", 25, False),
        Row("board", "pico", "wrap_up_extend_s", 10, False),
    ]
    body = resolve(rows, 7, site="hq", desk="desk-01", team="complaints", board="pico")
    assert body == {
        "version": 7,
        "layers": {
            "team": {"wrap_up_s": 60, "hold_reminder_s": 80},
            "site": {"hold_reminder_s": 90},
            "desk": {"ring_timeout_s": 25},
            "board": {"wrap_up_extend_s": 10},
        },
        "locks": {"hold_reminder_s": "site"},
    }
    check_policy(body)  # what central publishes, a desk accepts
    assert resolve(rows, 7, site="hq", desk="desk-02", team="", board="")["layers"] == {"site": {"hold_reminder_s": 90}}


@pytest.mark.parametrize(
    ("layer", "target", "values", "lock", "message"),
    [
        ("desk", "desk-01", {"wrap_up_s": 5}, True, "only a site or a team may lock"),
        ("team", "a/b", {"wrap_up_s": 5}, False, "is not a name"),
        ("team", "blue", {}, False, "no key=value"),
        ("team", "blue", {"supervisor": 5}, False, "softphone.supervisor"),
    ],
)
def test_central_refuses_a_bad_change_before_storing_it(
    layer: str, target: str, values: dict[str, Any], lock: bool, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        check_change(layer, target, values, lock)


def test_the_acl_lets_central_write_policies_and_each_desk_read_its_own() -> None:
    from offhook.floor import broker

    text = broker.acl_text([broker.Desk("hq", "desk-01")], ["central-1"])
    assert "topic write offhook/v1/+/+/policy" in text
    assert "topic read offhook/v1/hq/desk-01/policy" in text and "topic write offhook/v1/hq/desk-01/settings" in text


class RecordingPage(Page):
    def __init__(self) -> None:
        self.ops: list[str] = []

    def post(self, message: dict[str, Any]) -> None:
        if message.get("type") == "request":
            self.ops.append(str(message.get("op")))


async def brightest(unit: SimulatedUnit, window_s: float = 0.6) -> int:
    """The highest level any lamp reached over ``window_s`` (the status lamp is lit when available)."""
    top = 0
    end = asyncio.get_running_loop().time() + window_s
    while asyncio.get_running_loop().time() < end:
        top = max(top, *unit.led_map().values())
        await asyncio.sleep(0.02)
    return top


def test_unit_settings_reach_the_unit_verified_and_change_its_behaviour(
    db: str, mqtt: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        page = RecordingPage()
        desk = RealDesk(mqtt, "desk-04", "complaints", tmp_path, {}, page)
        async with CentralTask(mqtt, db) as central:
            try:
                await desk.start()
                assert desk.daemon is not None and desk.client is not None
                await until(lambda: desk.daemon is not None and desk.daemon.desk.agent == L.AGENT_AVAILABLE, 10)
                before = await brightest(desk.unit)
                assert before > 0

                # Refused at central with the key named: never stored, never sent.
                for value, message in [
                    (
                        'button_map=["none","mute","hold","escalate","state","vol_up","vol_down"]',
                        "leaves hook unmapped",
                    ),
                    ("brightness=500", "brightness=500 out of range"),
                    ("brightness=nan", "unit.brightness = nan is not a finite number"),
                    ("brightness=true", "brightness must be an integer"),
                ]:
                    result = await asyncio.to_thread(cli, db, "set", "--desk", "desk-04", value)
                    assert result.returncode == 2 and message in result.stderr, (value, result.stderr)

                result = await asyncio.to_thread(cli, db, "set", "--desk", "desk-04", "brightness=10")
                assert result.returncode == 0, result.stderr
                unit_state = desk.daemon.unit_settings
                await until(lambda: unit_state.report()["state"] == "verified", 15)
                await until(lambda: reported(db, "desk-04").get("unit", {}).get("state") == "verified", 5)
                after = await brightest(desk.unit)
                assert 0 < after < before / 4, (before, after)  # the VM's PWM follows the new brightness

                # The button map: input 2 (the "mute" key) becomes hook, and answers a ringing call.
                swapped = '["mute","hook","hold","escalate","state","vol_up","vol_down"]'
                result = await asyncio.to_thread(cli, db, "set", "--desk", "desk-04", f"button_map={swapped}")
                assert result.returncode == 0, result.stderr
                version = int(result.stdout.split()[1].rstrip(":"))
                await until(lambda: unit_state.state == {"version": version, "state": "verified", "error": None}, 15)
                # Central keeps what the desk reports (its next write round): `show` prints it from there.
                verified = {"version": version, "state": "verified"}
                await until(lambda: verified.items() <= reported(db, "desk-04").get("unit", {}).items(), 5)
                desk.call("incoming", "c9@pbx")
                await until(lambda: desk.daemon is not None and desk.daemon.desk.calls, 5)
                await desk.unit.press("mute")
                await until(lambda: "answer" in page.ops, 5)
                shown = await asyncio.to_thread(cli, db, "show", "--desk", "desk-04")
                line = next(line for line in shown.stdout.splitlines() if line.split()[:1] == ["brightness"])
                assert line.split()[1:3] == ["10", "desk"]
                assert f"unit settings of version {version}: verified" in shown.stdout

                # A forged policy (a map that leaves hook unmapped, a higher version) is refused at the
                # desk: the daemon and the unit keep the last good settings.
                no_hook = ["none", "mute", "hold", "escalate", "state", "vol_up", "vol_down"]
                forged = {"version": version + 100, "layers": {"desk": {"button_map": no_hook}}, "locks": {}}
                topic = S.topic(SITE, "desk-04", S.POLICY)
                central._acks.put_nowait(floor_client.Publish(topic, S.encode(forged), retain=True))
                await until(lambda: desk.client is not None and desk.client.counters["policy_refused"] == 1, 10)
                assert "unit.button_map: button_map leaves hook unmapped" in str(desk.client.feed.refused)
                assert desk.daemon.policy_version == version and unit_state.state["version"] == version

                # A unit that connects again (or a replacement) gets the settings in effect again.
                pushes = caplog.text.count(f"unit settings of version {version} verified")
                await desk.unit.unplug()
                await until(lambda: desk.daemon is not None and not desk.daemon.unit_connected.is_set(), 10)
                await desk.unit.replug()
                await until(lambda: caplog.text.count(f"unit settings of version {version} verified") > pushes, 20)

                # A unit key unset at central: once the desk is idle the unit is back on the firmware's default.
                desk.call("closed", "c9@pbx")
                result = await asyncio.to_thread(cli, db, "unset", "--desk", "desk-04", "brightness")
                assert result.returncode == 0, result.stderr
                default = {"value": 80, "source": "default", "locked": False}
                await until(lambda: unit_state.report()["effective"]["brightness"] == default, 15)
                await until(lambda: unit_state.state["state"] == "verified", 15)
                assert await brightest(desk.unit) > after
            finally:
                await desk.stop()

    run(scenario(), 120)
