"""`offhook fleet keygen|build`: IT's signing key and signed firmware bundles.

`offhook flash` and `offhook devices` (the fleet's day-to-day commands) live in
offhook.commands.flash.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from offhook.cli import EXIT_OK, UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    fleet = subparsers.add_parser("fleet", help="signing keys and signed firmware bundles (IT)")
    commands = fleet.add_subparsers(title="fleet commands", metavar="COMMAND")

    keygen = commands.add_parser(
        "keygen",
        help="create an RSA-3072 signing key pair",
        description="Write KEY (PKCS#8 PEM encrypted with the passphrase: PBKDF2-SHA256, 600,000 iterations, "
        "AES-256; mode 0600) and KEY.pub. The passphrase (at least 12 characters) comes from the first line of "
        "--passphrase-file, $OFFHOOK_KEY_PASSPHRASE, or a prompt.",
    )
    keygen.add_argument("key", type=Path, help="private key file to create (KEY.pub is written beside it)")
    keygen.add_argument("--passphrase-file", type=Path, help="file whose first line is the passphrase")
    keygen.set_defaults(handler=_keygen)

    build = commands.add_parser(
        "build",
        help="compile the firmware with mpy-cross and write a signed bundle",
        description="Compile the firmware for BOARD with mpy-cross and write one signed bundle: the .mpy "
        "files, a manifest (version, board, per-file sha256 and size, minimum boot loader) and its signature.",
    )
    build.add_argument("--key", type=Path, required=True, help="private signing key (from `fleet keygen`)")
    build.add_argument("--version", required=True, help="firmware version, MAJOR.MINOR.PATCH")
    build.add_argument("--board", required=True, choices=("pico", "esp32s3", "sim"))
    build.add_argument("--passphrase-file", type=Path, help="file whose first line is the passphrase")
    build.add_argument("--rotate-to", type=Path, help="public key the units switch to after this bundle")
    build.add_argument("-o", "--output", type=Path, help="bundle file (default offhook-VERSION-BOARD.ohb)")
    build.set_defaults(handler=_build)

    prov = commands.add_parser(
        "provision",
        help="first install onto a board running stock MicroPython (raw REPL)",
        description="Write the factory image, the boot loader and the key store (IT's public key) onto a "
        "board over its raw REPL (mpremote). From then on only signed bundles change the unit.",
    )
    prov.add_argument("--port", required=True, help="the board's serial port")
    prov.add_argument("--board", required=True, choices=("pico", "esp32s3"))
    prov.add_argument("--pubkey", type=Path, required=True, help="IT's public key (KEY.pub from keygen)")
    prov.set_defaults(handler=_provision)

    show = commands.add_parser("show", help="print a bundle's manifest (unverified)")
    show.add_argument("bundle", type=Path)
    show.set_defaults(handler=_show)


def _keygen(args: argparse.Namespace) -> int:
    from offhook.fleet import keys

    try:
        passphrase = keys.read_passphrase(args.passphrase_file, new=True)
        private, public = keys.generate(args.key, passphrase)
    except (keys.KeyError_, OSError) as exc:
        raise UsageError(str(exc)) from None
    print(f"private key: {private} (encrypted, mode 0600)\npublic key:  {public}")
    return EXIT_OK


def _build(args: argparse.Namespace) -> int:
    from offhook import bundle as B
    from offhook.fleet import build, keys

    try:
        B.parse_version(args.version)
    except B.BundleError as exc:
        raise UsageError(str(exc)) from None
    output = args.output or Path(f"offhook-{args.version}-{args.board}.ohb")
    _check_output(output)  # before the passphrase prompt and the minute of compiling
    try:
        passphrase = keys.read_passphrase(args.passphrase_file)
        key = keys.load_private(args.key, passphrase)
        new_key = keys.modulus_hex(keys.load_public(args.rotate_to)) if args.rotate_to else None
        data = build.build_firmware(args.version, args.board, key, new_key=new_key)
    except (B.BundleError, keys.KeyError_, OSError) as exc:
        raise UsageError(str(exc)) from None
    _write(output, data)
    manifest = build.peek_manifest(data)
    print(f"{output}: firmware {args.version} for {args.board}, {len(manifest['files'])} files, {len(data)} bytes")
    return EXIT_OK


def _check_output(output: Path) -> None:
    if output.is_dir():
        raise UsageError(f"cannot write the bundle to {output}: it is a directory (give a file name)")
    parent = output.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write the bundle to {output}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write the bundle to {output}: directory {parent} is not writable")


def _write(output: Path, data: bytes) -> None:
    """Whole or not at all: a failed write (disk full) leaves no partial bundle."""
    tmp = output.with_name(f".{output.name}.tmp")
    try:
        tmp.write_bytes(data)
        tmp.replace(output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write the bundle to {output}: {exc.strerror or exc}") from None


def _show(args: argparse.Namespace) -> int:
    from offhook import bundle as B
    from offhook.fleet import build

    try:
        manifest = build.peek_manifest(args.bundle.read_bytes())
    except (B.BundleError, OSError) as exc:
        raise UsageError(str(exc)) from None
    json.dump(manifest, sys.stdout, indent=2)
    print()
    return EXIT_OK


def _provision(args: argparse.Namespace) -> int:
    from offhook import bundle as B
    from offhook.fleet import keys, provision

    try:
        files = provision.plan(args.board, keys.modulus_hex(keys.load_public(args.pubkey)))
        repl = provision.open_repl(args.port)
    except (B.BundleError, keys.KeyError_, OSError, RuntimeError) as exc:
        raise UsageError(str(exc)) from None
    try:
        provision.install(repl, files, lambda path: print(f"  {path}"))
    finally:
        repl.close()
    print(f"{args.port}: provisioned for {args.board} ({len(files)} files); reset the board to boot it")
    return EXIT_OK
