"""What of the desk survives a daemon restart: a small JSON file, written atomically on change.

It holds the agent state, each call's mute as the softphone confirmed it (by Call-ID: evidence a
restarted daemon may show again for the same call) and a running wrap-up's deadline in wall time
(the next run's monotonic clock may start anew after a power cut). Call records are the metrics
store's business, not this file's.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

from offhook import linkproto as L
from offhook.daemon.desk import Desk

log = logging.getLogger(__name__)


class DeskMemory:
    def __init__(self, path: Path, clock: Callable[[], float], wall_clock: Callable[[], float]) -> None:
        self.path = path
        self.clock = clock
        self.wall_clock = wall_clock
        self._saved: tuple[dict[str, bool], int, float | None] | None = None

    def restore(self, desk: Desk) -> None:
        """Give a new desk what the last run saved; an unreadable file is logged and ignored."""
        try:
            saved = json.loads(self.path.read_text())
            agent = int(saved.get("agent", L.AGENT_AVAILABLE))
            mutes = saved.get("mutes", {})  # older files hold one "muted" for no call in particular: unconfirmed
            wrap_up_until = float(saved.get("wrap_up_until_wall") or 0.0)
            if (
                not 0 <= agent < len(L.AGENT_NAMES)
                or not isinstance(mutes, dict)
                or not all(isinstance(k, str) and isinstance(v, bool) for k, v in mutes.items())
                or not math.isfinite(wrap_up_until)
            ):
                raise ValueError("bad values")
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable daemon state %s: %s", self.path, exc)
            return
        timers = desk.timers
        # A wall clock that jumped meanwhile cannot stretch the wrap-up past its longest.
        left = min(wrap_up_until - self.wall_clock(), timers.wrap_up_s + timers.wrap_up_extend_s)
        desk.restore(mutes, agent, self.clock(), wrap_up_left_s=left)

    def save(self, desk: Desk) -> None:
        """Save when it changed (not on every STATE: no fsync per second)."""
        wrap_up_until = desk.wrap_up_until if desk.agent == L.AGENT_WRAP_UP else None
        mutes = desk.mutes()
        saved = (mutes, desk.agent, wrap_up_until)
        if saved == self._saved:
            return
        self._saved = saved
        wall_deadline = 0.0 if wrap_up_until is None else round(self.wall_clock() + wrap_up_until - self.clock(), 1)
        data = {"mutes": mutes, "agent": desk.agent, "wrap_up_until_wall": wall_deadline}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as handle:
            handle.write(json.dumps(data))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.path)
