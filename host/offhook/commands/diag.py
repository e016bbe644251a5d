"""`offhook diag`: write a support bundle with every secret and customer number removed."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from offhook.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diag",
        help="write a support bundle (versions, config, units, logs) with secrets removed",
        description=(
            "Write a .tar.gz for support: versions, the effective config, the daemon's saved state, "
            "attached units, paired web origins (names only) and the given logs. Tokens, keys, "
            "passphrases and customer numbers are replaced before anything is written."
        ),
    )
    parser.add_argument("-o", "--output", type=Path, help="bundle path (default: ./offhook-diag-TIME.tar.gz)")
    parser.add_argument("--config", type=Path, help="config file (default: the user's)")
    parser.add_argument("--log", type=Path, action="append", default=[], help="a log file to include (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from offhook.diag import write_bundle

    for log in args.log:
        if not log.is_file():
            raise UsageError(f"--log {log}: no such file")
    out = args.output or Path(f"offhook-diag-{time.strftime('%Y%m%d-%H%M%S')}.tar.gz")
    if out.is_dir():
        raise UsageError(f"-o {out}: is a directory; give a file name")
    try:
        names = write_bundle(out, args.config, args.log)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None
    if args.json:
        print(json.dumps({"bundle": str(out), "files": names}))
    else:
        print(f"wrote {out} ({len(names)} files; secrets and customer numbers removed)")
    return 0
