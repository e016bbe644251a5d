"""A desk's side of a rollout: central's ``update`` message in, the daemon's update relay, phases out.

The message comes over the broker on the desk's own topic, which only central may write (the
broker's ACL): that is how an update from central is authenticated. It names the bundle by its
sha256; the bundle itself comes over central's HTTPS when the desk is idle and it is next
(``rollouts.fetch_bundle``, resumable), and the relay checks it whole against the fleet key, the
unit's board and version before it touches the unit; the unit checks again. Each phase goes back
to central as an ``update_status`` body (``publish``).

A message with ``prefetch`` (the desk is likely in the next stage, which starts after a soak)
only downloads the bundle into the cache, in the background and whatever the desk is doing; the
update that follows then finds it there. It reports nothing: central counts only updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from offhook.daemon.updates import UpdateRelay
from offhook.floor import rollouts as R

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DeskUpdates:
    def __init__(
        self,
        relay: UpdateRelay,
        base_url: str,
        cache_dir: Path,
        publish: Callable[[dict[str, Any]], None],
        tz: str = "",
        ssl: Any = None,
    ) -> None:
        """``base_url``: central's HTTPS side (``https://central.example.com:8443``); ``cache_dir``
        keeps part-downloaded bundles (``<sha256>.part``) so a cut download resumes."""
        self.relay = relay
        self.base_url = base_url.rstrip("/")
        self.cache_dir = cache_dir
        self.publish = publish
        self.tz = tz
        self.ssl = ssl
        self.handled: set[tuple[str, str]] = set()  # (rollout, sha256): a retained message seen again is not news
        self.prefetching: dict[str, asyncio.Task[None]] = {}  # sha256 → its download ahead of the stage

    def on_update(self, body: dict[str, Any]) -> None:
        """Central's retained ``update`` body (already JSON-decoded)."""
        rollout = body.get("rollout")
        if not isinstance(rollout, str) or not 0 < len(rollout) <= 128:
            log.warning("floor: refused an update message: no rollout")
            return
        if body.get("cancel") is True:
            self.relay.cancel(rollout)
            return
        sha256, version, url = body.get("sha256"), body.get("version"), body.get("url")
        if not (isinstance(sha256, str) and _SHA256.match(sha256) and isinstance(version, str)):
            log.warning("floor: refused an update message for %s: bad sha256 or version", rollout[:64])
            return
        if url != f"/bundles/{sha256}":
            log.warning("floor: refused an update message for %s: bad url", rollout[:64])
            return
        unit = self.relay.owner.unit
        if body.get("prefetch") is True:
            if not (unit is not None and unit.fw == version) and sha256 not in self.prefetching:
                self.prefetching[sha256] = asyncio.get_running_loop().create_task(self._prefetch(sha256))
            return
        if (rollout, sha256) in self.handled:
            return
        self.handled.add((rollout, sha256))
        if unit is not None and unit.fw == version:
            self.publish({"rollout": rollout, "phase": "up to date", "percent": 100, "reason": "", "tz": self.tz})
            return
        self.relay.submit_remote(sha256, version, rollout, lambda: self._bundle(sha256))

    async def _bundle(self, sha256: str) -> bytes:
        """The bundle, from the cache when it was fetched ahead (waiting for that download to end)."""
        ahead = self.prefetching.get(sha256)
        if ahead is not None:
            await asyncio.wait((ahead,))  # its failure is not this one's: the fetch below resumes it
        return await self._fetch(sha256)

    async def _prefetch(self, sha256: str) -> None:
        with contextlib.suppress(R.RolloutError, OSError):  # the update itself tries again, and reports
            await self._fetch(sha256)
            log.info("floor: bundle %s fetched ahead of its stage", sha256[:12])

    async def _fetch(self, sha256: str) -> bytes:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        url = f"{self.base_url}/bundles/{sha256}"
        return await R.fetch_bundle(url, sha256, self.cache_dir / f"{sha256}.part", self.ssl)

    def on_event(self, message: dict[str, Any]) -> None:
        """A daemon event (a listener): the relay's phases of central's updates go back to central."""
        if message.get("event") != "update" or message.get("source") in (None, "local"):
            return
        self.publish(
            {
                "rollout": message["source"],
                "phase": message["phase"],
                "percent": message.get("percent", 0),
                "reason": message.get("reason", ""),
                "tz": self.tz,
            }
        )
