"""`offhook recordings list | decrypt | purge`: the encrypted call recordings (docs/recording.md).

The agent's PC holds only ciphertext and sidecars; decrypting needs the quality team's identity
(an age key file), which never belongs on that PC. Bad input: one line, exit 2, nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from offhook.cli import EXIT_FAILED, EXIT_OK, UsageError


def default_directory() -> Path:
    """``[recording] directory`` from the daemon's config, else the data dir's recordings/."""
    from offhook import config

    try:
        configured = config.load()["recording"]["directory"]
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    if configured:
        return Path(configured).expanduser()
    from offhook.metrics.store import default_data_dir

    return default_data_dir() / "recordings"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("recordings", help="list, decrypt or purge the encrypted call recordings")
    commands = parser.add_subparsers(title="recordings commands", metavar="COMMAND")

    listing = commands.add_parser("list", help="the recordings: call, agent, times, paused spans, status")
    _dir_option(listing)
    listing.add_argument("--json", action="store_true", help="one JSON document")
    listing.set_defaults(handler=_list)

    decrypt = commands.add_parser(
        "decrypt",
        help="decrypt one recording to an Ogg/Opus file (needs the quality team's identity)",
        description="Decrypt FILE (.ogg.age) with an age identity file; the whole file must authenticate "
        "before anything is written, and OUTPUT is never overwritten.",
    )
    decrypt.add_argument("file", type=Path, help="the encrypted recording (.ogg.age)")
    decrypt.add_argument("--identity", "-i", type=Path, required=True, help="age identity file (AGE-SECRET-KEY-1...)")
    decrypt.add_argument("--output", "-o", type=Path, help="where to write (default: FILE without .age)")
    decrypt.add_argument(
        "--salvage",
        action="store_true",
        help="a recording a crash cut short: write the part before the cut that authenticates",
    )
    decrypt.add_argument("--json", action="store_true", help="print the result as JSON")
    decrypt.set_defaults(handler=_decrypt)

    purge = commands.add_parser("purge", help="remove recordings older than the retention period")
    _dir_option(purge)
    purge.add_argument("--days", type=int, help="retention in days (default: [recording] retention_days)")
    purge.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    purge.add_argument("--json", action="store_true", help="one JSON document")
    purge.set_defaults(handler=_purge)


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, help="recordings directory (default: [recording] directory)")


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=1))


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _list(args: argparse.Namespace) -> int:
    from offhook.recording.store import RecordingError, entries

    directory = args.dir or default_directory()
    try:
        found, problems = entries(directory)
    except RecordingError as exc:
        raise UsageError(str(exc)) from None
    for problem in problems:
        print(f"offhook: warning: {problem}", file=sys.stderr)
    if args.json:
        _print_json({"directory": str(directory), "recordings": [e.to_json() for e in found]})
        return EXIT_OK
    if not found:
        print(f"no recordings in {directory}")
    for entry in found:
        m = entry.meta
        paused = ", ".join(f"{a:.1f}-{b:.1f}s" for a, b in m.paused) or "none"
        state = m.status + (f" ({m.reason})" if m.reason else "")
        print(f"{m.audio}  {_when(m.started)}  {m.duration_s:7.1f}s  {m.agent}  {m.call_id}  {state}  paused: {paused}")
    return EXIT_OK


def _decrypt(args: argparse.Namespace) -> int:
    from offhook.recording.store import RecordingError, decrypt

    source: Path = args.file
    if not source.is_file():
        raise UsageError(f"{source}: no such recording")
    if args.output is None and not source.name.endswith(".age"):
        raise UsageError(f"{source}: not a .age file; give --output")
    output: Path = args.output or source.with_name(source.name[: -len(".age")])
    try:
        size, complete = decrypt(source, args.identity, output, salvage=args.salvage)
    except RecordingError as exc:
        print(f"offhook: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json({"file": str(source), "output": str(output), "bytes": size, "complete": complete})
    else:
        cut = "" if complete else " (truncated: the recording was cut short; the part before the cut)"
        print(f"{output}: {size} bytes of Ogg/Opus{cut}")
    return EXIT_OK


def _purge(args: argparse.Namespace) -> int:
    from offhook import config
    from offhook.recording.store import RecordingError, purge

    days = args.days
    if days is None:
        try:
            days = config.load()["recording"]["retention_days"]
        except config.ConfigError as exc:
            raise UsageError(str(exc)) from None
    if days < 1:
        raise UsageError(f"--days {days}: must be at least 1")
    directory = args.dir or default_directory()
    try:
        removed = purge(directory, days, dry_run=args.dry_run)
    except RecordingError as exc:
        print(f"offhook: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        _print_json(
            {
                "directory": str(directory),
                "days": days,
                "dry_run": args.dry_run,
                "removed": [e.to_json() for e in removed],
            }
        )
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {len(removed)} recording(s) older than {days} days from {directory}")
    return EXIT_OK
