"""`offhook central`: the service (`run`, with its web side), broker files (`init`), role tokens, inventory,
floor-wide settings (`config`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

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
    web = run.add_argument_group("web side (wallboard, inventory, JSON API; see docs/floor.md)")
    web.add_argument("--https", metavar="HOST:PORT", help="serve HTTPS here (e.g. 0.0.0.0:8443); off without it")
    web.add_argument("--tls-cert", type=Path, help="its certificate chain (PEM; init's server.pem for tests)")
    web.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    web.add_argument(
        "--hold-reminder-s", type=float, default=120.0, help="a hold is highlighted past this (default 120)"
    )
    run.set_defaults(handler=_run)

    token = commands.add_parser(
        "token",
        help="make, list and revoke the web side's role tokens",
        description="Tokens for the wallboard (role supervisor) and the inventory (role it). A new token is "
        "shown once; PostgreSQL keeps only its hash.",
    )
    token_commands = token.add_subparsers(title="token commands", metavar="COMMAND")
    create = token_commands.add_parser("create", help="make a token and print it once")
    create.add_argument("--role", required=True, choices=("supervisor", "it"))
    create.add_argument("--name", required=True, help="whose or what it is (shown in lists and logs)")
    revoke = token_commands.add_parser("revoke", help="revoke a token (by id or name); its sessions end")
    revoke.add_argument("which", help="the token's id or name")
    listing = token_commands.add_parser("list", help="every token (never the secret)")
    listing.add_argument("--json", action="store_true")
    for sub, handler in ((create, _token_create), (revoke, _token_revoke), (listing, _token_list)):
        sub.add_argument("--db", default=os.environ.get("OFFHOOK_CENTRAL_DB", ""), help="PostgreSQL conninfo or URL")
        sub.set_defaults(handler=handler)
    token.set_defaults(handler=lambda _args: token.print_help() or 2)

    inventory = commands.add_parser(
        "inventory",
        help="every unit on the floor (serial, desk, agent, board, firmware, slot, health, last seen)",
    )
    inventory.add_argument("--db", default=os.environ.get("OFFHOOK_CENTRAL_DB", ""), help="PostgreSQL conninfo or URL")
    inventory.add_argument("--json", action="store_true", help="one JSON document")
    inventory.set_defaults(handler=_inventory)
    _register_config(commands)
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
    if args.https:
        _add_web(central, args)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        return await serve(central, stop)

    logging.getLogger("offhook.central").info("central %s starting", central.instance)
    return asyncio.run(main())


def _add_web(central: object, args: argparse.Namespace) -> None:
    from offhook.floor.central import Central
    from offhook.floor.web import FloorWeb, server_ssl

    assert isinstance(central, Central)
    host, _, port = args.https.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--https {args.https!r} must be HOST:PORT")
    if not args.tls_cert or not args.tls_key:
        raise UsageError("--https needs --tls-cert and --tls-key (offhook central init writes test ones)")
    try:
        context = server_ssl(args.tls_cert, args.tls_key)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load the TLS certificate or key: {exc}") from None
    if not args.hold_reminder_s > 0:
        raise UsageError("--hold-reminder-s must be positive")
    web = FloorWeb(args.db, ssl_context=context, host=host, port=int(port), hold_reminder_s=args.hold_reminder_s)
    central.ingest.on_live = web.live
    central.services.append(web.run)


def _db(args: argparse.Namespace) -> Any:
    import psycopg

    from offhook.floor import pgstore

    if not args.db:
        raise UsageError("--db (or OFFHOOK_CENTRAL_DB) names the PostgreSQL database")

    async def migrated() -> None:
        conn = await pgstore.connect(args.db)
        try:
            await pgstore.migrate(conn)
        finally:
            await conn.close()

    try:
        asyncio.run(migrated())  # the token and session tables may not exist yet
        return psycopg.connect(args.db, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise UsageError(f"cannot reach the database: {' '.join(str(exc).split())[:200]}") from None


def _token_create(args: argparse.Namespace) -> int:
    from offhook.floor import auth

    with _db(args) as conn:
        try:
            secret, row = auth.create_token(conn, args.role, args.name)
        except auth.AuthError as exc:
            raise UsageError(str(exc)) from None
    print(secret)
    print(f"token {row.id} ({row.role}, {row.name!r}): shown once, only its hash is kept", file=sys.stderr)
    return EXIT_OK


def _token_revoke(args: argparse.Namespace) -> int:
    from offhook.floor import auth

    with _db(args) as conn:
        rows = auth.revoke_token(conn, args.which)
    if not rows:
        print(f"no live token with id or name {args.which!r}", file=sys.stderr)
        return 1
    for row in rows:
        print(f"revoked token {row.id} ({row.role}, {row.name!r})")
    return EXIT_OK


def _token_list(args: argparse.Namespace) -> int:
    from offhook.floor import auth

    with _db(args) as conn:
        rows = auth.list_tokens(conn)
    if args.json:
        print(json.dumps([{**row.__dict__} for row in rows], default=str, indent=1))
        return EXIT_OK
    for row in rows:
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "live"
        used = f"last used {row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never used"
        print(f"{row.id:>4}  {row.role:<10}  {row.name:<24}  {state}, {used}")
    return EXIT_OK


def _inventory(args: argparse.Namespace) -> int:
    import time

    from offhook.floor.web import INVENTORY_FIELDS, INVENTORY_SQL
    from offhook.metrics.report import printable

    with _db(args) as conn:
        units = [dict(zip(INVENTORY_FIELDS, row, strict=True)) for row in conn.execute(INVENTORY_SQL).fetchall()]
    if args.json:
        print(json.dumps({"units": units}, indent=1))
        return EXIT_OK
    now = time.time()
    columns = ("serial", "site", "desk", "team", "agent", "board", "firmware", "slot", "health", "unit", "pc", "seen")
    lines: list[tuple[str, ...]] = [columns]
    for u in units:
        seen = f"{now - u['last_seen']:.0f} s ago" if u["last_seen"] else "never"
        unit = "connected" if u["connected"] else "lost"
        pc = "online" if u["online"] else "offline"
        lines.append((*(printable(str(u[k])) for k in columns[:9]), unit, pc, seen))
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        print("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip())
    print(f"{len(units)} units")
    return EXIT_OK


def _register_config(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser(
        "config",
        help="floor-wide settings: set, unset and show layered values (desk > team > site > board > local)",
        description="Floor-wide settings. Each change is checked, versioned and published to the desks it "
        "applies to; each desk applies it when idle. See docs/floor.md (Settings).",
    )
    config_commands = config.add_subparsers(title="config commands", metavar="COMMAND")
    set_ = config_commands.add_parser("set", help="set KEY=VALUE in one layer (--lock: a site or team locks it)")
    set_.add_argument("values", nargs="+", metavar="KEY=VALUE")
    set_.add_argument("--lock", action="store_true", help="the value overrides every other layer and local TOML")
    unset = config_commands.add_parser("unset", help="remove keys from one layer")
    unset.add_argument("values", nargs="+", metavar="KEY")
    for sub in (set_, unset):
        which = sub.add_mutually_exclusive_group(required=True)
        for layer in ("desk", "team", "site", "board"):
            which.add_argument(f"--{layer}", metavar="NAME", help=f"the {layer} layer of this {layer}")
    show = config_commands.add_parser("show", help="a desk's effective settings, each with its source layer")
    show.add_argument("--desk", required=True, metavar="NAME")
    show.add_argument("--json", action="store_true")
    for sub, handler in ((set_, _config_set), (unset, _config_unset), (show, _config_show)):
        sub.add_argument("--db", default=os.environ.get("OFFHOOK_CENTRAL_DB", ""), help="PostgreSQL conninfo or URL")
        sub.set_defaults(handler=handler)
    config.set_defaults(handler=lambda _args: config.print_help() or 2)


def parse_value(text: str) -> Any:
    """A value as typed: integer, number (nan and inf too, to be refused by name), true/false, JSON, text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text in ("true", "false"):
        return text == "true"
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            raise UsageError(f"{text[:40]!r} is not valid JSON") from None
    return text


def _layer(args: argparse.Namespace) -> tuple[str, str]:
    for layer in ("desk", "team", "site", "board"):
        if getattr(args, layer):
            return layer, getattr(args, layer)
    raise UsageError("one of --desk, --team, --site, --board")


def _config_set(args: argparse.Namespace) -> int:
    from offhook.floor import policy
    from offhook.settings import PolicyError

    layer, target = _layer(args)
    values: dict[str, Any] = {}
    for item in args.values:
        key, equals, text = item.partition("=")
        if not equals or not key:
            raise UsageError(f"{item!r} must be KEY=VALUE")
        values[key] = parse_value(text)
    try:
        policy.check_change(layer, target, values, args.lock)  # before touching the database
    except PolicyError as exc:
        raise UsageError(str(exc)) from None
    with _db(args) as conn:
        version = policy.set_values(conn, layer, target, values, args.lock)
    locked = " (locked)" if args.lock else ""
    print(f"version {version}: {layer} {target}: {', '.join(f'{k}={v!r}' for k, v in values.items())}{locked}")
    return EXIT_OK


def _config_unset(args: argparse.Namespace) -> int:
    from offhook.floor import policy
    from offhook.settings import PolicyError

    layer, target = _layer(args)
    with _db(args) as conn:
        try:
            removed, version = policy.unset(conn, layer, target, list(args.values))
        except PolicyError as exc:
            raise UsageError(str(exc)) from None
    if not removed:
        print(f"{layer} {target} sets none of {', '.join(args.values)}: nothing changed", file=sys.stderr)
        return 1
    print(f"version {version}: {layer} {target}: {removed} removed")
    return EXIT_OK


def _config_show(args: argparse.Namespace) -> int:
    from offhook import settings
    from offhook.floor import policy

    with _db(args) as conn:
        view = policy.desk_view(conn, args.desk)
    if view is None:
        raise UsageError(f"no desk {args.desk!r} has been seen on the floor")
    if args.json:
        print(json.dumps(view, indent=1))
        return EXIT_OK
    report = view["report"]
    where = f"desk {view['site']}/{view['desk']} (team {view['team'] or '-'}, board {view['board'] or '-'})"
    if report is None:
        print(f"{where}: no report from the desk yet; central's layers only (version {view['central_version']})")
        checked = settings.check_policy(view["policy"]) if view["central_version"] else None
        chosen = {**settings.effective(checked, {}), **settings.unit_effective(checked)}
        rows = {k: {"value": e.value, "source": e.source, "locked": e.locked} for k, e in chosen.items()}
    else:
        pending = f", version {report['pending']} waits for the desk to be idle" if report.get("pending") else ""
        print(f"{where}: version {report['version']} in effect (central at {view['central_version']}){pending}")
        if report.get("refused"):
            print(f"  refused a policy: {report['refused']}")
        unit = report.get("unit") or {}
        if unit.get("version"):
            error = f": {unit['error']}" if unit.get("error") else ""
            print(f"  unit settings of version {unit['version']}: {unit.get('state')}{error}")
        rows = {**report["effective"], **unit.get("effective", {})}
    width = max((len(key) for key in rows), default=0)
    for key, chosen in sorted(rows.items()):
        note = "  locked: overrides the desk's local config" if chosen.get("locked") else ""
        print(f"  {key:<{width}}  {json.dumps(chosen['value']):<24}  {chosen['source']}{note}")
    return EXIT_OK
