"""`offhook link decode`: explain link-protocol bytes (for support and debugging)."""

from __future__ import annotations

import argparse
import json
import sys

from offhook import linkproto
from offhook.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    link = subparsers.add_parser("link", help="inspect offhook link-protocol bytes")
    link_commands = link.add_subparsers(title="link commands", metavar="COMMAND")
    decode = link_commands.add_parser(
        "decode",
        help="decode a hex byte stream into frames",
        description="Decode hex bytes (as captured from a unit's serial port) into link frames.",
    )
    decode.add_argument("hex", nargs="?", help="hex bytes; read from stdin when omitted")
    decode.add_argument("--json", action="store_true", help="one JSON object per frame")
    decode.set_defaults(handler=_decode)


def describe(item: linkproto.Frame | linkproto.DecodeError) -> dict:
    """A JSON-ready description of one decoded frame or decode error."""
    if isinstance(item, linkproto.DecodeError):
        return {"error": linkproto.ERROR_NAMES.get(item.code, str(item.code)), "reason": item.reason}
    described: dict = {"type": item.name, "seq": item.seq, "ack_requested": item.ack_requested}
    decoders = {
        linkproto.EVENT: lambda p: _named(("button", "gesture", "unit_ms"), linkproto.decode_event(p)),
        linkproto.STATE: lambda p: _named(("call", "agent", "flags", "timer_s"), linkproto.decode_state(p)),
        linkproto.ACK: lambda p: {"acked": linkproto.decode_ack(p)},
        linkproto.NACK: lambda p: _named(("seq", "code", "reason"), linkproto.decode_nack(p)),
        linkproto.LOG: lambda p: _named(("level", "text"), linkproto.decode_log(p)),
        linkproto.PING: lambda p: {"token": linkproto.decode_ping(p)},
        linkproto.PONG: lambda p: {"token": linkproto.decode_ping(p)},
    }
    try:
        if item.type in decoders:
            described["fields"] = decoders[item.type](item.payload)
        elif item.type == linkproto.UPDATE_CHUNK:
            offset, data = linkproto.decode_chunk(item.payload)
            described["fields"] = {"offset": offset, "bytes": len(data)}
        elif item.payload:
            described["fields"] = linkproto.decode_json(item.payload)
    except ValueError as exc:
        described["payload_error"] = str(exc)
    return described


def _named(names: tuple[str, ...], values: tuple) -> dict:
    return dict(zip(names, values, strict=True))


def _decode(args: argparse.Namespace) -> int:
    text = args.hex if args.hex is not None else sys.stdin.read()
    try:
        data = bytes.fromhex("".join(text.split()))
    except ValueError as exc:
        raise UsageError(f"not hex bytes: {exc}") from None
    items = linkproto.Decoder().feed(data + b"\x00")
    for item in items:
        described = describe(item)
        print(json.dumps(described) if args.json else _one_line(described))
    return 1 if any(isinstance(item, linkproto.DecodeError) for item in items) else 0


def _one_line(described: dict) -> str:
    if "error" in described:
        return f"error: {described['error']} ({described['reason']})"
    fields = " ".join(f"{key}={value}" for key, value in described.get("fields", {}).items())
    return f"{described['type']} seq={described['seq']} {fields}".rstrip()
