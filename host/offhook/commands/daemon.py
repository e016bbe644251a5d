"""`offhook daemon`: run the bridge between the desk unit, the softphone and API clients."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import platformdirs

from offhook import config as config_module
from offhook.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "daemon",
        help="run the daemon (desk unit ↔ softphone ↔ local API)",
        description="Run the daemon: owns the desk unit, drives the softphone, serves the local API on 127.0.0.1.",
    )
    parser.add_argument("--config", type=Path, help=f"TOML config (default: {config_module.default_config_path()})")
    parser.add_argument("--softphone", choices=("baresip", "api"), help="override softphone.kind")
    parser.add_argument("--port", help="serial port of the unit (overrides discovery and unit.port)")
    parser.add_argument("--api-port", type=int, help="override api.port")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    parser.set_defaults(handler=_run)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname.lower(), "logger": record.name}
        entry["msg"] = record.getMessage()
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class PrivacyFilter(logging.Filter):
    """Masks customer numbers and secrets in every line, whoever logs it (a raw softphone message
    in an error, an event's data): the metrics store keeps numbers only as keyed hashes, and a
    log, which IT collects and ships, must not undo that."""

    def filter(self, record: logging.LogRecord) -> bool:
        from offhook.diag import scrub

        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def setup_logging(verbose: int, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(PrivacyFilter())
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("websockets").setLevel(logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    try:
        # A file named with --config must exist; only the default path may be missing (then defaults).
        config = config_module.load(args.config, required=args.config is not None)
    except config_module.ConfigError as exc:
        raise UsageError(str(exc)) from None
    if args.softphone:
        config["softphone"]["kind"] = args.softphone
    if args.port:
        try:  # the same rules as unit.port in the file (no control characters)
            config["unit"]["port"] = config_module.validate({"unit": {"port": args.port}}, "--port")["unit"]["port"]
        except config_module.ConfigError as exc:
            raise UsageError(str(exc)) from None
    if args.api_port is not None:
        if not 0 <= args.api_port <= 65535:
            raise UsageError(f"--api-port {args.api_port} is not a port number")
        config["api"]["port"] = args.api_port
    setup_logging(args.verbose, args.log_json)
    return asyncio.run(serve(config))


def _today(recorder: Any, agent: str, tz: str) -> dict:
    """Today's figures for the panel; the report code (numpy) loads on the first request only."""
    from offhook.metrics.report import today

    return today(recorder.conn, agent=agent, tz=tz)


def _audio_mute(muted: bool) -> None:
    """Mute a running `offhook audio run` (raises OSError when none runs)."""
    from offhook.audio.control import control_socket_path, request_mute

    path = control_socket_path()
    if not path.exists():
        raise FileNotFoundError(f"no audio pipeline at {path}")
    request_mute(muted, path)


async def serve(config: dict) -> int:
    from offhook.api.server import ApiServer
    from offhook.api.tokens import TokenStore
    from offhook.daemon.service import Daemon
    from offhook.softphone.baresip import BaresipAdapter
    from offhook.softphone.base import Softphone

    softphone: Softphone
    if config["softphone"]["kind"] == "baresip":
        host, _, port = config["softphone"]["baresip_ctrl"].rpartition(":")
        softphone = BaresipAdapter(host, int(port))
    else:
        from offhook.softphone.web import WebSoftphone

        softphone = WebSoftphone()
    from offhook.metrics.sink import MetricsSink
    from offhook.metrics.store import CallRecorder

    state_file = Path(platformdirs.user_state_dir("offhook")) / "daemon-state.json"
    agent = config["agent"]["name"] or getpass.getuser()
    recorder = CallRecorder()
    sink = MetricsSink(recorder, agent=agent, tz=config["agent"]["timezone"])
    daemon = Daemon(config, softphone, state_file, recorder=sink, audio_mute=_audio_mute)
    api = ApiServer(
        daemon,
        TokenStore(),
        config["api"]["port"],
        config["api"]["allowed_origins"],
        figures=lambda: _today(recorder, agent, sink.tz),
    )
    if hasattr(softphone, "attach"):
        softphone.attach(api)
    try:
        await api.start()
    except OSError as exc:
        logging.getLogger("offhook").error("cannot listen on 127.0.0.1:%d: %s", config["api"]["port"], exc)
        return 1
    logging.getLogger("offhook").info("local API on ws://127.0.0.1:%d/api", api.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    running = asyncio.create_task(daemon.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    await api.stop()
    return 0
