"""`offhook demo`: a demo call on the desk unit (simulated unless a real one is plugged in)."""

from __future__ import annotations

import argparse
import asyncio
import logging

from offhook.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="take a demo call: baresip lines, the daemon and a (simulated) desk unit",
        description=(
            "Start three baresip lines on 127.0.0.1 (agent, customer, supervisor), the daemon and a "
            "simulated desk unit with its terminal UI (a real unit is used when one is plugged in). "
            "In the UI, c makes the customer call and x makes the customer hang up."
        ),
    )
    parser.add_argument("--api-port", type=int, default=8677, help="local API port (default 8677)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to offhook-demo.log")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from offhook.demo import run

    if not 0 <= args.api_port <= 65535:
        raise UsageError(f"--api-port {args.api_port} is not a port number")
    if args.verbose:
        logging.basicConfig(filename="offhook-demo.log", level=logging.INFO)
    try:
        return asyncio.run(run(args.api_port))
    except KeyboardInterrupt:
        return 0
