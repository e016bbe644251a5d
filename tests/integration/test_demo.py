"""`make run` (offhook demo) in a terminal: take a call with keys, Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

OFFHOOK = Path(sys.executable).with_name("offhook")


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    children = [int(child) for child in out]
    return children + [grand for child in children for grand in descendants(child)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is installed by make test")
def test_demo_call_and_clean_ctrl_c(tmp_path: Path) -> None:
    name = f"offhook-demo-{os.getpid()}"
    env = f"XDG_RUNTIME_DIR={tmp_path} XDG_CONFIG_HOME={tmp_path}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", name, "-x", "110", "-y", "40", f"{env} {OFFHOOK} demo --api-port 0"],
        check=True,
    )

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout

    def wait_for(text: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while text not in screen():
            assert time.monotonic() < deadline, f"{text!r} never appeared:\n{screen()}"
            time.sleep(0.1)

    try:
        wait_for("call idle")
        pane = int(
            subprocess.run(
                ["tmux", "list-panes", "-t", name, "-F", "#{pane_pid}"], capture_output=True, text=True
            ).stdout.split()[0]
        )
        processes = [pane, *descendants(pane)]
        assert len(processes) >= 5  # offhook, the VM, three baresip lines
        subprocess.run(["tmux", "send-keys", "-t", name, "c"], check=True)
        wait_for("call ringing")
        subprocess.run(["tmux", "send-keys", "-t", name, "h"], check=True)
        wait_for("call active   agent on_call")
        subprocess.run(["tmux", "send-keys", "-t", name, "C-c"], check=True)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in processes if alive(pid)], "processes left after Ctrl-C"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
