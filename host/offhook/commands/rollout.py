"""`offhook rollout`: staged firmware rollouts, stored in central's PostgreSQL (docs/fleet.md)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from offhook.cli import EXIT_OK, UsageError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def register(subparsers: argparse._SubParsersAction) -> None:
    rollout = subparsers.add_parser(
        "rollout",
        help="staged firmware rollouts across the floor (run by offhook central)",
        description="Create, follow and steer rollouts of a signed bundle: a canary, then waves, a soak between "
        "stages; central halts one by itself when a stage's failures pass the threshold.",
    )
    sub = rollout.add_subparsers(title="actions", metavar="ACTION", required=True)

    def with_db(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--db", default=os.environ.get("OFFHOOK_CENTRAL_DB", ""), help="PostgreSQL conninfo or URL")
        return parser

    create = with_db(sub.add_parser("create", help="start a rollout of BUNDLE"))
    create.add_argument("bundle", type=Path)
    create.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="COND",
        help="team=NAME, site=NAME, board=NAME or version<X.Y.Z (repeatable: all must hold; default every desk)",
    )
    create.add_argument("--name", default="", help="the rollout's name (default: BOARD-VERSION)")
    create.add_argument("--canary", default="1", help="units in the canary: N or N%% (default 1)")
    create.add_argument("--waves", default="25%", help="each later stage: N%% of the desks targeted (default 25%%)")
    create.add_argument("--soak", default="1h", help="wait after each stage ends: 90s, 30m, 2h (default 1h)")
    create.add_argument("--halt-at", default="10%", help="halt when a stage's failures pass this (default 10%%)")
    create.add_argument("--window", default="", help="maintenance window in each desk's local time, HH:MM-HH:MM")
    create.add_argument(
        "--pubkey",
        default=os.environ.get("OFFHOOK_FLEET_PUBKEY", ""),
        help="the fleet's public key (KEY.pub) the bundle must be signed by (default $OFFHOOK_FLEET_PUBKEY)",
    )
    create.set_defaults(handler=_create)

    status = with_db(sub.add_parser("status", help="each rollout's progress"))
    status.add_argument("name", nargs="?", default="")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    for action, text in (
        ("pause", "stop sending"),
        ("resume", "go on (also after a halt)"),
        ("abort", "stop for good"),
    ):
        parser = with_db(sub.add_parser(action, help=text))
        parser.add_argument("name")
        parser.set_defaults(handler=_control, action=action)

    pin = with_db(sub.add_parser("pin", help="keep TEAM on VERSION: rollouts of others skip it"))
    pin.add_argument("team")
    pin.add_argument("version")
    pin.set_defaults(handler=_pin)
    unpin = with_db(sub.add_parser("unpin", help="let rollouts reach TEAM again"))
    unpin.add_argument("team")
    unpin.set_defaults(handler=_pin, version=None)


def _percent_or_count(text: str, what: str) -> tuple[int, bool]:
    match = re.match(r"^(\d{1,6})(%?)$", text.strip())
    if match is None or int(match[1]) < 1 or (match[2] and int(match[1]) > 100):
        raise UsageError(f"{what} must be N (units) or N% (1 to 100), not {text!r}")
    return int(match[1]), bool(match[2])


def _percent(text: str, what: str, low: float) -> float:
    match = re.match(r"^(\d{1,3}(?:\.\d+)?)%?$", text.strip())
    if match is None or not low <= float(match[1]) <= 100:
        raise UsageError(f"{what} must be a percentage from {low:g} to 100, not {text!r}")
    return float(match[1])


def _seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(f"--soak must look like 90s, 30m, 2h or 1d, not {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def _db(args: argparse.Namespace) -> Any:
    from offhook.commands.central import _db as central_db

    return central_db(args)


def _create(args: argparse.Namespace) -> int:
    from offhook import bundle as B
    from offhook.daemon.updates import fleet_key
    from offhook.floor import rollouts as R

    if not args.pubkey:
        raise UsageError("--pubkey (or OFFHOOK_FLEET_PUBKEY) names the fleet's public key")
    if not Path(args.pubkey).is_file():
        raise UsageError(f"--pubkey {args.pubkey}: no such file")
    os.environ["OFFHOOK_FLEET_PUBKEY"] = args.pubkey
    n = fleet_key()
    if n is None:
        raise UsageError(f"--pubkey {args.pubkey}: not a public key")
    try:
        data = args.bundle.read_bytes()
    except OSError as exc:
        raise UsageError(f"{args.bundle}: {exc.strerror or exc}") from None
    canary, canary_percent = _percent_or_count(args.canary, "--canary")
    waves, waves_percent = _percent_or_count(args.waves, "--waves")
    if not waves_percent:
        raise UsageError(f"--waves is a percentage of the desks targeted (e.g. 25%), not {args.waves!r}")
    try:
        manifest = R.accept_bundle(data, n)
        spec = R.Spec(
            name=args.name or f"{manifest['board']}-{manifest['version']}",
            version=str(manifest["version"]),
            board=str(manifest["board"]),
            sha256=B.sha256_hex(data),
            target=R.parse_target(args.target),
            canary=canary,
            canary_percent=canary_percent,
            wave_percent=waves,
            soak_s=_seconds(args.soak),
            max_failed_percent=_percent(args.halt_at, "--halt-at", 0),
            window=R.parse_window(args.window) if args.window else None,
        )
    except R.RolloutError as exc:
        raise UsageError(str(exc)) from None
    with _db(args) as conn:
        try:
            R.create(conn, spec, data)
        except R.RolloutError as exc:
            raise UsageError(str(exc)) from None
    print(f"rollout {spec.name}: {spec.board} {spec.version} ({spec.sha256[:12]}), canary {args.canary} then {waves}%")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from offhook.floor import rollouts as R

    with _db(args) as conn:
        rows = R.status(conn)
    if args.name:
        rows = [row for row in rows if row["name"] == args.name]
        if not rows:
            raise UsageError(f"no rollout named {args.name!r}")
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return EXIT_OK
    if not rows:
        print("no rollouts")
        return EXIT_OK
    if sys.stdout.isatty():
        _bars(rows)
    else:
        for row in rows:
            print(_line(row))
    for row in rows:
        for desk, why in sorted(row["skipped"].items()):
            print(f"  {row['name']}: {desk} skipped: {why}")
        for desk, unit in sorted(row["units"].items()):
            if unit["phase"] in R.BAD:
                print(f"  {row['name']}: {desk} {unit['phase']}: {unit['reason']}")
    return EXIT_OK


def _line(row: dict[str, Any]) -> str:
    reason = f" ({row['reason']})" if row["reason"] else ""
    return (
        f"{row['name']}: {row['board']} {row['version']} {row['status']}{reason}, stage {row['stage']}, "
        f"{row['done']}/{row['targeted']} done, {row['failed']} failed"
    )


def _bars(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(),
        auto_refresh=False,
    ) as bar:
        for row in rows:
            status = f"{row['status']} stage {row['stage']}" + (f": {row['reason']}" if row["reason"] else "")
            bar.add_task(row["name"], total=max(1, row["targeted"]), completed=row["done"], status=status)
        bar.refresh()


def _control(args: argparse.Namespace) -> int:
    from offhook.floor import rollouts as R

    with _db(args) as conn:
        try:
            rollout = R.control(conn, args.name, args.action)
        except R.RolloutError as exc:
            raise UsageError(str(exc)) from None
    print(f"rollout {args.name}: {rollout.status}")
    return EXIT_OK


def _pin(args: argparse.Namespace) -> int:
    from offhook.floor import rollouts as R

    with _db(args) as conn:
        try:
            R.pin(conn, args.team, args.version)
        except R.RolloutError as exc:
            raise UsageError(str(exc)) from None
    print(f"team {args.team}: " + (f"pinned to {args.version}" if args.version else "unpinned"))
    return EXIT_OK
