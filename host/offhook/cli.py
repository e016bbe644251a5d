"""The `offhook` command line: one sub-command module per area.

Each module in COMMAND_MODULES exposes ``register(subparsers)``, adding its
sub-commands with ``set_defaults(handler=...)``; a handler takes the parsed
arguments and returns the exit code. Heavy imports (numpy, textual) stay inside
handlers so `offhook --help` stays fast. Exit codes: 0 success, 1 the work
failed, 2 bad usage or bad input (argparse's convention).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from offhook import __version__

COMMAND_MODULES = (
    "offhook.commands.link",
    "offhook.commands.daemon",
    "offhook.commands.sim",
    "offhook.commands.demo",
    "offhook.commands.diag",
    "offhook.commands.audio",
    "offhook.commands.metrics",
    "offhook.commands.fleet",
    "offhook.commands.flash",
    "offhook.commands.central",
    "offhook.commands.rollout",
    "offhook.commands.recordings",
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="offhook",
        description="offhook: the desk unit's host tools (daemon, simulator, audio, metrics, fleet).",
    )
    parser.add_argument("--version", action="version", version=f"offhook {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(handler(args))
    except UsageError as exc:
        print(f"offhook: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m offhook.cli`: run the imported module's main, so the UsageError the commands raise
    # (offhook.cli's) is the one caught here, not a second copy of this module's class.
    from offhook.cli import main as imported_main

    sys.exit(imported_main())
