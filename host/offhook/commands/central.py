"""`offhook central`: the floor's service (`run`) and its broker files (`init`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from offhook.cli import EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "central",
        help="the floor: broker files, and the service that writes every desk into PostgreSQL",
        description="The floor's central service: every desk's live state, call records and inventory, "
        "from the MQTT broker (Mosquitto) into PostgreSQL. See docs/floor.md.",
    )
    commands = parser.add_subparsers(title="central commands", metavar="COMMAND")

    init = commands.add_parser(
        "init",
        help="write the broker's password file, ACL, mosquitto.conf and a test CA",
        description="Write (or complete: existing passwords, keys and certificates are kept) the broker's files.",
    )
    init.add_argument("directory", type=Path, help="where the broker's files go (e.g. /etc/offhook-floor)")
    init.add_argument("--desk", action="append", default=[], metavar="SITE/NAME", help="a desk (repeatable)")
    init.add_argument("--desks-file", type=Path, help="desks, one SITE/NAME a line")
    init.add_argument("--host", action="append", default=[], help="the broker's host name(s) for its certificate")
    init.add_argument("--port", type=int, default=8883, help="TLS listener port (default 8883)")
    init.add_argument("--bind", default="0.0.0.0", help="listener address (default 0.0.0.0)")
    init.add_argument("--centrals", type=int, default=2, help="central accounts central-1..N (default 2)")
    init.add_argument("--client-certs", action="store_true", help="also a client certificate per desk (port+1)")
    init.add_argument("--no-log-refusals", action="store_true", help="no debug log (central cannot count ACL refusals)")
    init.set_defaults(handler=_init)

    run = commands.add_parser(
        "run",
        help="subscribe to the broker and write to PostgreSQL",
        description="Run one central instance; several may run against the same broker and database.",
    )
    run.add_argument("--db", default=os.environ.get("OFFHOOK_CENTRAL_DB", ""), help="PostgreSQL conninfo or URL")
    run.add_argument("--broker", required=True, help="mqtts://HOST:8883")
    run.add_argument("--username", required=True, help="central's broker account (central-N)")
    run.add_argument("--password-file", type=Path, required=True, help="its password (secrets/central-N.password)")
    run.add_argument("--ca-file", type=Path, help="the CA that signed the broker's certificate")
    run.add_argument("--broker-log", type=Path, help="Mosquitto's log file: count ACL and login refusals from it")
    run.add_argument("--instance", default="", help="this instance's name in the counters table")
    run.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    run.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    run.set_defaults(handler=_run)
    parser.set_defaults(handler=lambda _args: parser.print_help() or 2)


def _init(args: argparse.Namespace) -> int:
    from offhook.floor import broker

    texts = list(args.desk)
    if args.desks_file:
        try:
            texts += [line for line in args.desks_file.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise UsageError(f"{args.desks_file}: {exc.strerror or exc}") from None
    try:
        desks = [broker.Desk.parse(text) for text in texts]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not 1 <= args.port <= 65534:
        raise UsageError(f"--port {args.port} is not a port number")
    if not 1 <= args.centrals <= 64:
        raise UsageError("--centrals must be 1..64")
    try:
        done = broker.init(
            args.directory,
            desks,
            hosts=args.host or ["localhost"],
            port=args.port,
            bind=args.bind,
            centrals=args.centrals,
            client_certs=args.client_certs,
            log_refusals=not args.no_log_refusals,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"{len(done.desks)} desks, {len(done.centrals)} central accounts in {done.directory}")
    for name in done.created:
        print(f"  created {name}")
    print(f"run the broker: mosquitto -c {done.directory.resolve() / 'mosquitto.conf'}")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from offhook.commands.daemon import setup_logging
    from offhook.floor.central import Central, serve
    from offhook.floor.client import Broker

    if not args.db:
        raise UsageError("--db (or OFFHOOK_CENTRAL_DB) names the PostgreSQL database")
    scheme, _, rest = args.broker.partition("://")
    if scheme not in ("mqtt", "mqtts") or not rest:
        raise UsageError(f"--broker {args.broker!r} must be mqtts://HOST:PORT")
    try:
        password = args.password_file.read_text().strip()
    except OSError as exc:
        raise UsageError(f"{args.password_file}: {exc.strerror or exc}") from None
    floor = {
        "broker": args.broker,
        "username": args.username,
        "ca_file": str(args.ca_file or ""),
    }
    broker = Broker.from_config(floor)
    broker = Broker(**{**broker.__dict__, "password": password})
    setup_logging(max(args.verbose, 1), args.log_json)
    central = Central(broker, args.db, instance=args.instance, broker_log=args.broker_log)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        return await serve(central, stop)

    logging.getLogger("offhook.central").info("central %s starting", central.instance)
    return asyncio.run(main())
