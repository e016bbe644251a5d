"""The daemon's composition root: which softphone adapter, which store, the local API, and the run.

Parts are chosen from tables (``SOFTPHONES``), as the audio backends are (offhook.audio.BACKENDS);
everything the parts need is built here and passed in, so no part reaches for another.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import platformdirs

from offhook.softphone.base import Softphone

if TYPE_CHECKING:
    from offhook.audio.control import AudioChannel
    from offhook.softphone.web import WebSoftphone

log = logging.getLogger("offhook")


def _baresip(config: dict[str, Any]) -> Softphone:
    from offhook.softphone.baresip import BaresipAdapter

    host, _, port = config["softphone"]["baresip_ctrl"].rpartition(":")
    return BaresipAdapter(host, int(port))


def _web(config: dict[str, Any]) -> Softphone:
    from offhook.softphone.web import WebSoftphone

    return WebSoftphone()


@dataclass(frozen=True)
class SoftphoneKind:
    make: Callable[[dict[str, Any]], Softphone]
    via_api: bool  # the softphone is a page talking to the local API (the API server hands it its page)


# softphone.kind -> how to make it (config.py checks the kind against these names).
SOFTPHONES: dict[str, SoftphoneKind] = {
    "baresip": SoftphoneKind(_baresip, via_api=False),
    "api": SoftphoneKind(_web, via_api=True),
}


def state_file() -> Path:
    return Path(platformdirs.user_state_dir("offhook")) / "daemon-state.json"


def _audio_mute(muted: bool) -> None:
    """Mute a running `offhook audio run` (raises OSError when none runs)."""
    from offhook.audio.control import control_socket_path, request_mute

    path = control_socket_path()
    if not path.exists():
        raise FileNotFoundError(f"no audio pipeline at {path}")
    request_mute(muted, path)


def _audio_channel() -> AudioChannel | None:
    """The daemon's end of the channel to `offhook audio run` (call events out, figures back); None
    where it cannot bind (no Unix datagram sockets): the calls' analytics are then null."""
    from offhook.audio.control import AudioChannel

    try:
        return AudioChannel()
    except (OSError, AttributeError) as exc:  # AttributeError: no socket.AF_UNIX (Windows)
        log.warning("no channel to the audio pipeline (%s): conversation analytics are off", exc)
        return None


async def serve(config: dict[str, Any], local_settings: dict[str, Any] | None = None) -> int:
    """Run the daemon and its API until SIGINT/SIGTERM; 1 if the API cannot listen."""
    from offhook.api.server import ApiServer
    from offhook.api.tokens import TokenStore
    from offhook.daemon.service import Daemon
    from offhook.metrics.report import today
    from offhook.metrics.sink import MetricsSink
    from offhook.metrics.store import CallRecorder

    kind = SOFTPHONES[config["softphone"]["kind"]]
    softphone = kind.make(config)
    agent = config["agent"]["name"] or getpass.getuser()
    recorder = CallRecorder()
    sink = MetricsSink(recorder, agent=agent, tz=config["agent"]["timezone"])
    daemon = Daemon(
        config,
        softphone,
        state_file(),
        recorder=sink,
        audio_mute=_audio_mute,
        local_settings=local_settings,
        audio_channel=_audio_channel(),
    )
    api = ApiServer(
        daemon,
        TokenStore(),
        config["api"]["port"],
        config["api"]["allowed_origins"],
        figures=lambda: today(recorder.conn, agent=agent, tz=sink.tz),
    )
    if kind.via_api:
        api.web_softphone = cast("WebSoftphone", softphone)
    try:
        await api.start()
    except OSError as exc:
        log.error("cannot listen on 127.0.0.1:%d: %s", config["api"]["port"], exc)
        return 1
    log.info("local API on ws://127.0.0.1:%d/api", api.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(daemon.run())
    from offhook import floor

    floor_client = floor.start(daemon, config, recorder)  # only when [floor] names a broker (docs/floor.md)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    if floor_client is not None:
        await floor_client.close()
    await api.stop()
    return 0
