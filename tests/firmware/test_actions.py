"""One action table: hw/actions.md, offhook.actions, the firmware's double-press default and
the daemon's resolver all agree."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

from offhook import actions
from offhook import linkproto as L
from offhook.vm import MicroPythonVM
from tests.conftest import REPO_ROOT
from tests.firmware import fw


def test_markdown_is_the_table() -> None:
    lines = (REPO_ROOT / "hw" / "actions.md").read_text().splitlines()
    start = lines.index("| button | gesture | when | action | meaning |")
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(tuple(cell.strip() for cell in line.strip("|").split("|")))
    assert rows == [tuple(rule) for rule in actions.TABLE]


def test_names_are_linkproto_names() -> None:
    for rule in actions.TABLE:
        assert rule.button in L.BUTTON_NAMES
        assert rule.gesture == "any" or rule.gesture in L.GESTURE_NAMES.values()
        assert rule.when in actions.WHEN


def test_firmware_double_press_default(mpvm: MicroPythonVM) -> None:
    fw.boot(mpvm)
    default = json.loads(mpvm.run("import json\nprint(json.dumps(app.store.config['double_press']))").check())
    assert sorted(default) == actions.double_press_buttons()


def test_daemon_resolves_like_the_table() -> None:
    from offhook.daemon import actions as daemon_actions

    call = object()
    for button, gesture, pairing, ringing, active, agent in itertools.product(
        range(len(L.BUTTON_NAMES)),
        L.GESTURE_NAMES,
        (False, True),
        (False, True),
        (False, True),
        range(len(L.AGENT_NAMES)),
    ):
        desk = SimpleNamespace(
            pairing=pairing, ringing=call if ringing else None, active=call if active else None, agent=agent
        )
        now = actions.situations(
            pairing=pairing and not ringing and not active, ringing=ringing, wrap_up=agent == L.AGENT_WRAP_UP
        )
        assert daemon_actions.resolve(button, gesture, desk) == actions.lookup(button, gesture, now), (  # type: ignore[arg-type]
            L.BUTTON_NAMES[button],
            L.GESTURE_NAMES[gesture],
            desk,
        )
