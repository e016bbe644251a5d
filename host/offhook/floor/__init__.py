"""The floor: every desk's live state, call records and inventory over MQTT into PostgreSQL.

See docs/floor.md. ``start(daemon, config, recorder)`` is the daemon's one seam: it starts the
floor client when ``[floor]`` names a broker, and imports nothing of the floor otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from offhook.floor.client import FloorClient
    from offhook.metrics.store import CallRecorder


def start(daemon: Any, config: dict[str, dict[str, Any]], recorder: CallRecorder) -> FloorClient | None:
    """The floor client subscribed to ``daemon.listeners`` and running, or None without ``[floor]``."""
    if not config.get("floor", {}).get("broker"):
        return None
    from offhook.floor.client import attach

    return attach(daemon, config["floor"], recorder)
