"""`offhook flash`, `offhook devices`, `offhook identify`: IT's day-to-day fleet commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offhook.cli import EXIT_FAILED, EXIT_OK, UsageError

if TYPE_CHECKING:
    from offhook.unitlink import UnitInfo

IDENTIFY_SECONDS = (1.0, 600.0)  # long enough to spot on the floor, short enough not to be forgotten


def register(subparsers: argparse._SubParsersAction) -> None:
    flash = subparsers.add_parser(
        "flash",
        help="flash a signed firmware bundle onto units",
        description="Send BUNDLE to the chosen units in parallel; each verifies it, switches slots when idle "
        "and confirms its health. Exit code 1 when any unit failed. With no unit named, hand BUNDLE to the "
        "running daemon, which applies it to its unit once no call or wrap-up is in progress (needs the admin "
        "secret: run as root or an admin).",
    )
    flash.add_argument("bundle", type=Path)
    flash.add_argument("--wait", action="store_true", help="with the daemon: follow the update to its end")
    which = flash.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every unit found (USB and simulated)")
    which.add_argument("--device", action="append", metavar="SERIAL", help="a unit's serial number (repeatable)")
    which.add_argument("--port", action="append", metavar="PATH", help="a serial port path (repeatable)")
    flash.add_argument("--parallel", type=int, default=8, metavar="N", help="units flashed at once (default 8)")
    flash.add_argument("--retries", type=int, default=2, help="tries after a transient failure (default 2)")
    flash.add_argument("--json", action="store_true", help="results as JSON, no progress bars")
    flash.set_defaults(handler=_flash)

    devices = subparsers.add_parser(
        "devices",
        help="list units: serial, board, firmware, slot, health, transport",
        description="Units on serial ports, over USB HID and simulated; a unit reachable both ways is one row "
        "(transport serial+hid).",
    )
    devices.add_argument("--json", action="store_true")
    devices.set_defaults(handler=_devices)

    ident = subparsers.add_parser(
        "identify",
        help="blink one unit so it can be found on the floor",
        description="Blink the unit with serial SERIAL. The unit a running daemon owns is blinked by the daemon "
        "over its own session (refused during a call or its wrap-up).",
    )
    ident.add_argument("serial")
    ident.add_argument("--seconds", type=float, default=10.0, help="how long it blinks, 1 to 600 (default 10)")
    ident.set_defaults(handler=_identify)


def _units(serials: list[str] | None = None) -> list[tuple[str, str, str]]:
    """(path, kind, serial) of the units found, optionally only the given serials."""
    from offhook.transport.discovery import candidates

    found = [(c.path, c.kind, c.serial) for c in candidates()]
    if serials is None:
        return found
    chosen = []
    for serial in serials:
        match = [unit for unit in found if unit[2].lower() == serial.lower()]
        if not match:
            raise UsageError(f"no unit with serial {serial} found")
        if match[0] not in chosen:  # `--device X --device x` is one unit, flashed once
            chosen.append(match[0])
    return chosen


def _distinct_ports(paths: list[str]) -> list[str]:
    """The ports named, each once (two names of one device, e.g. a by-id symlink, count once)."""
    seen: dict[str, str] = {}
    for path in paths:
        seen.setdefault(os.path.realpath(path), path)
    return list(seen.values())


def _is_port(owned: dict, path: str) -> bool:
    """Whether the daemon's unit is the one at ``path``: the daemon's config may name its port by
    another path to the same device (a /dev/serial/by-id symlink)."""
    theirs = str(owned.get("path") or "")
    return bool(theirs) and (theirs == path or os.path.realpath(theirs) == os.path.realpath(path))


def _flash(args: argparse.Namespace) -> int:
    from offhook import bundle as B
    from offhook.fleet import build

    if args.parallel < 1:
        raise UsageError("--parallel must be at least 1")
    if args.retries < 0:
        raise UsageError("--retries must be 0 or more")
    try:
        data = args.bundle.read_bytes()
        manifest = build.peek_manifest(data)
    except (OSError, B.BundleError) as exc:
        raise UsageError(f"{args.bundle}: {exc}") from None
    if not (args.all or args.device or args.port):
        return _hand_over(args.bundle, data, args.wait, args.json)
    if args.wait:
        raise UsageError("--wait goes with handing the bundle to the daemon (no --all, --device or --port)")
    if args.port:
        paths = _distinct_ports(args.port)
    else:
        paths = [path for path, _kind, _serial in _units(None if args.all else args.device)]
    if not paths:
        raise UsageError("no units found")
    if args.json:
        results = asyncio.run(_flash_paths(paths, data, manifest, args.parallel, args.retries, None))
        json.dump([r.as_dict() for r in results], sys.stdout, indent=2)
        print()
    else:
        results = asyncio.run(_with_progress(paths, data, manifest, args.parallel, args.retries))
        _table(results)
    return EXIT_OK if all(r.result in ("ok", "up to date") for r in results) else EXIT_FAILED


async def _with_progress(paths: list[str], data: bytes, manifest: dict, parallel: int, retries: int) -> list:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description:<28}"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[phase]}")
    ) as bar:
        tasks = {path: bar.add_task(Path(path).name, total=len(data), phase="waiting") for path in paths}

        def progress(path: str, done: int, total: int, phase: str) -> None:
            bar.update(tasks[path], completed=done, phase=phase)

        return await _flash_paths(paths, data, manifest, parallel, retries, progress)


def _admin_secret() -> str:
    """The admin secret (root or an admin group may read it): a local flash through the daemon needs it."""
    from offhook.daemon import updates

    path = Path(os.environ.get("OFFHOOK_ADMIN_SECRET_FILE") or updates.ADMIN_SECRET)
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise UsageError(
            f"cannot read the admin secret {path}: {exc.strerror or exc} (run as root or an admin)"
        ) from None


def _hand_over(bundle: Path, data: bytes, wait: bool, as_json: bool) -> int:
    """Give BUNDLE to the running daemon; with ``wait``, follow its phases to the end."""
    from websockets.exceptions import WebSocketException

    from offhook.api.client import DaemonRefused
    from offhook.bundle import sha256_hex

    secret, port = _admin_secret(), _api_port()
    try:
        job = asyncio.run(_daemon_update(port, str(bundle.resolve()), sha256_hex(data), secret, wait, as_json))
    except DaemonRefused as exc:
        print(f"offhook: the daemon refused the update: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (OSError, TimeoutError, WebSocketException) as exc:
        print(f"offhook: no daemon at 127.0.0.1:{port} to hand the update to ({exc})", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        json.dump(job, sys.stdout, indent=2)
        print()
    elif not wait:
        print(f"update {job['id']} ({job['version']}) {job['phase']}: offhook flash --wait follows it")
    return EXIT_FAILED if job["phase"] in ("failed", "rolled back") else EXIT_OK


async def _daemon_update(port: int, path: str, sha256: str, secret: str, wait: bool, as_json: bool) -> dict:
    """Ask the daemon to apply the bundle at ``path``; its job as the daemon last reported it."""
    from offhook.api.client import DaemonRefused, session
    from offhook.daemon.updates import ENDS

    async with session(port) as ws:
        ids = iter(range(1, 1 << 30))

        async def ask(**message: object) -> dict:
            number = next(ids)
            await ws.send(json.dumps({"id": number, **message}))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == number and reply.get("type") != "event":
                    if not reply.get("ok"):
                        raise DaemonRefused(str(reply.get("error", "refused")))
                    return reply

        await ask(type="subscribe")
        job = (await ask(type="update", admin=secret, path=path, sha256=sha256))["update"]
        show = _Follow(as_json or not sys.stdout.isatty())
        show(job)
        while wait and job["phase"] not in ENDS:
            event = json.loads(await ws.recv())
            if event.get("type") == "event" and event.get("event") == "update" and event.get("id") == job["id"]:
                job = {key: event[key] for key in job if key in event}
                show(job)
        show.close()
        return job


class _Follow:
    """An update's phases: a progress bar on a terminal, one line per phase otherwise."""

    def __init__(self, plain: bool) -> None:
        self.plain, self.last = plain, ""
        self.bar = None if plain else _bar()
        self.task = self.bar.add_task("unit", total=100, phase="") if self.bar else None

    def __call__(self, job: dict) -> None:
        text = job["phase"] + (f": {job['reason']}" if job.get("reason") else "")
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=job.get("percent", 0), phase=text)
        elif text != self.last:
            print(f"update {job['id']} ({job['version']}): {text}", file=sys.stderr)
        self.last = text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _bar() -> Any:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TextColumn("{task.fields[phase]}")
    )
    bar.start()
    return bar


def _api_port() -> int:
    from offhook import config

    try:
        return int(config.load()["api"]["port"])
    except config.ConfigError:
        return int(config.defaults()["api"]["port"])


async def _flash_paths(
    paths: list[str], data: bytes, manifest: dict, parallel: int, retries: int, progress: Callable | None
) -> list:
    """Flash ``paths``; the unit a running daemon owns is borrowed from it for the duration
    (the daemon refuses during a call or wrap-up: that unit is reported, the others flashed)."""
    from websockets.exceptions import WebSocketException

    from offhook.api.client import DaemonRefused, borrowed_unit
    from offhook.fleet import flasher
    from offhook.unitlink import UnitInfo

    port = _api_port()
    owned = await _daemon_unit(port)
    owned_path = next((path for path in paths if owned is not None and _is_port(owned, path)), None)
    if owned is None or owned_path is None:
        return await flasher.flash_all(paths, data, manifest, parallel, retries, progress)
    try:
        async with borrowed_unit(port):
            return await flasher.flash_all(paths, data, manifest, parallel, retries, progress)
    except DaemonRefused as exc:
        reason = f"the daemon keeps the unit: {exc}"
    except (OSError, TimeoutError, WebSocketException) as exc:
        reason = f"could not borrow the unit from the daemon: {exc}"
    others = [path for path in paths if path != owned_path]
    results = await flasher.flash_all(others, data, manifest, parallel, retries, progress) if others else []
    info = UnitInfo.from_hello(owned)
    refused = flasher.FlashResult(unit=info.serial or "?", path=owned_path, old=info.fw, reason=reason)
    return [*results, refused]


async def _daemon_unit(port: int) -> dict | None:
    """The running daemon's unit (offhook.api.client.daemon_unit), or None. A daemon that refuses
    this user's token (another user's daemon, a stale token), or something else on the port, is
    reported in one line on stderr; the command goes on with the units it can open itself."""
    from websockets.exceptions import ConnectionClosed, WebSocketException

    from offhook.api.client import daemon_unit

    try:
        return await daemon_unit(port)
    except ConnectionClosed as exc:
        if exc.rcvd is not None and exc.rcvd.code == 4403:
            why = "refused this user's API token (another user's daemon, or a stale token)"
        else:
            why = f"closed the connection ({exc})"
        print(f"offhook: the daemon at 127.0.0.1:{port} {why}; the unit it holds cannot be reached", file=sys.stderr)
    except WebSocketException as exc:
        print(f"offhook: 127.0.0.1:{port} does not answer as an offhook daemon ({exc})", file=sys.stderr)
    return None


def _table(results: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="offhook flash")
    for column in ("unit", "version", "result", "reason", "tries", "time"):
        table.add_column(column)
    for r in results:
        colour = "green" if r.result in ("ok", "up to date") else "red"
        table.add_row(
            r.unit,
            f"{r.old or '?'} → {r.new}",
            f"[{colour}]{r.result}[/]",
            r.reason,
            str(r.tries),
            f"{r.seconds:.1f} s",
        )
    Console().print(table)


def _devices(args: argparse.Namespace) -> int:
    from offhook.fleet import flasher
    from offhook.transport.discovery import candidates
    from offhook.unitlink import UnitInfo

    units = candidates(hid=True)

    async def ask() -> list:
        # The daemon holds its unit's port: describe that unit from the daemon, open the others.
        owned = await _daemon_unit(_api_port())
        owned_path = owned.get("path") if owned else None
        infos = list(
            await asyncio.gather(
                *(flasher.query(c.path, c.transport, c.hid_path) for c in units if c.path != owned_path)
            )
        )
        if owned is not None:
            hid_path = next((c.hid_path for c in units if c.path == owned_path), "")
            transport = _daemon_transport(str(owned.get("transport") or "serial"), hid_path)
            info = UnitInfo.from_hello(owned, str(owned_path), transport)
            info.hid_path = hid_path
            infos.insert(0, info)
        return infos

    infos = asyncio.run(ask())
    if args.json:
        json.dump([info.row() for info in infos], sys.stdout, indent=2)
        print()
        return EXIT_OK
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def shown(value: str) -> str:  # what a unit reports is never a terminal control sequence
        return "".join(c if c.isprintable() else "\ufffd" for c in value)

    names = ("serial", "board", "firmware", "slot", "health", "transport", "path")
    rows = [
        [
            shown(value)
            for value in (
                info.serial,
                info.board,
                info.fw,
                info.slot,
                info.error or ("safe mode" if info.safe_mode else info.health),
                info.transport,
                f"{info.path} + {info.hid_path}" if info.hid_path else info.path,
            )
        ]
        for info in infos
    ]
    console = Console()
    # Serials differ only in their last digits and versions are numbers: both stay whole on one line
    # (rich would cut them to "e6614c…"). The other columns wrap between words, a path anywhere.
    # Where that does not fit: one row per unit, its serial and then its details line by line.
    cells = [list(names), *rows]
    widths = [max(cell_len(word) for row in cells for word in row[i].split() or [""]) for i in range(len(names))]
    widths[0], widths[2] = (max(cell_len(row[i]) for row in cells) for i in (0, 2))
    widths[6] = min(widths[6], 12)
    table = Table(title=f"{len(infos)} unit(s)")
    if 3 * len(names) + 1 + sum(widths) <= console.width:
        for i, name in enumerate(names):
            if i in (0, 2):
                table.add_column(name, no_wrap=True, min_width=widths[i])
            else:
                table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*(Text(value) for value in row))
    else:
        table.add_column("serial", no_wrap=True, min_width=widths[0])
        table.add_column("unit", overflow="fold")
        for row in rows:
            table.add_row(
                Text(row[0]),
                Text("\n".join(f"{name}: {value}" for name, value in zip(names[1:], row[1:], strict=True))),
            )
    console.print(table)
    return EXIT_OK


def _daemon_transport(in_use: str, hid_path: str) -> str:
    """The daemon row's transport column: how the unit is reachable, and which way the daemon
    talks to it when it could be either ("serial+hid (daemon: hid)")."""
    if hid_path:
        return f"serial+hid (daemon: {in_use})"
    return f"{in_use} (daemon)"


def _identify(args: argparse.Namespace) -> int:
    low, high = IDENTIFY_SECONDS
    if not (math.isfinite(args.seconds) and low <= args.seconds <= high):
        raise UsageError(f"--seconds must be from {low:g} to {high:g}, not {args.seconds:g}")
    ((path, _kind, serial),) = _units([args.serial])
    info = asyncio.run(_identify_unit(path, serial, args.seconds))
    if info.error:
        print(f"offhook: {path}: {info.error}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{info.serial}: blinked for {args.seconds:g} s ({path})")
    return EXIT_OK


async def _identify_unit(path: str, serial: str, seconds: float) -> UnitInfo:
    """Blink the unit at ``path``; the running daemon's own unit is borrowed for the blink and given
    back, as `offhook flash` does (the daemon holds its port; it refuses during a call or wrap-up)."""
    from websockets.exceptions import WebSocketException

    from offhook.api.client import DaemonRefused, session
    from offhook.fleet import flasher

    port = _api_port()
    owned = await _daemon_unit(port)
    same_serial = bool(serial) and str((owned or {}).get("serial", "")).lower() == serial.lower()
    ours = owned is not None and (_is_port(owned, path) or same_serial)
    if not ours:
        return await flasher.identify(path, seconds)
    try:  # the daemon blinks its own unit over its session: the port stays with it
        async with session(port) as ws:
            await ws.send(json.dumps({"id": 1, "type": "identify", "seconds": seconds}))
            while (reply := json.loads(await ws.recv())).get("id") != 1 or reply.get("type") == "event":
                pass
        if not reply.get("ok"):
            raise DaemonRefused(str(reply.get("error", "refused")))
        return flasher.UnitInfo(path=path, serial=str(reply.get("serial", serial)))
    except DaemonRefused as exc:
        return flasher.UnitInfo(path=path, error=f"the daemon keeps the unit: {exc}")
    except (OSError, TimeoutError, WebSocketException) as exc:
        return flasher.UnitInfo(path=path, error=f"could not borrow the unit from the daemon: {exc}")
