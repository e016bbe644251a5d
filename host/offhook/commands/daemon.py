"""`offhook daemon`: run the bridge between the desk unit, the softphone and API clients."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TextIO

from offhook import config as config_module
from offhook.cli import UsageError
from offhook.daemon.wiring import SOFTPHONES


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "daemon",
        help="run the daemon (desk unit ↔ softphone ↔ local API)",
        description="Run the daemon: owns the desk unit, drives the softphone, serves the local API on 127.0.0.1.",
    )
    parser.add_argument("--config", type=Path, help=f"TOML config (default: {config_module.default_config_path()})")
    parser.add_argument("--softphone", choices=tuple(SOFTPHONES), help="override softphone.kind")
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
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = record.stack_info
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
        # An exception's text (a softphone's raw answer, a URI in an OSError) is logged too: the
        # formatters print exc_text when it is set, so it is set here, scrubbed.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def log_handler(as_json: bool, stream: TextIO | None = None) -> logging.Handler:
    """The daemon's and central's log handler: text or JSON lines, customer numbers masked."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(PrivacyFilter())
    return handler


def setup_logging(verbose: int, as_json: bool) -> None:
    handler = log_handler(as_json)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("websockets").setLevel(logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    try:
        # A file named with --config must exist; only the default path may be missing (then defaults).
        config = config_module.load(args.config, required=args.config is not None)
        local_settings = config_module.read(args.config or config_module.default_config_path())
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
    return asyncio.run(serve(config, local_settings))


async def serve(config: dict, local_settings: dict) -> int:
    """The daemon, its local API and their parts, as offhook.daemon.wiring puts them together;
    ``local_settings``: the TOML as written (floor-wide settings report which keys it set)."""
    from offhook.daemon.wiring import serve as serve_daemon

    return await serve_daemon(config, local_settings)
