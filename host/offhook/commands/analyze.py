"""`offhook audio analyze MIC.wav REF.wav [--json]`: a call's conversation figures from two recordings.

Registered under `offhook audio` (offhook.commands.audio calls :func:`register`). The whole file is
connected time; the microphone goes through offhook's echo canceller first, exactly as in a call.
"""

from __future__ import annotations

import argparse
import json
import sys

from offhook.cli import UsageError


def register(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser(
        "analyze",
        help="talk time, overtalk, dead air, response time and audio quality of a recorded call",
        description=(
            "MIC.wav (the agent's headset microphone) and REF.wav (what the softphone played: the customer), "
            "mono 16-bit, 16 or 48 kHz, same rate and length. The whole recording counts as connected time."
        ),
    )
    analyze.add_argument("mic", help="microphone recording (agent + echo + noise)")
    analyze.add_argument("ref", help="far-end recording (the customer, as played to the agent)")
    analyze.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    analyze.add_argument("--overtalk-s", type=float, default=0.5, help="shortest overtalk (default 0.5)")
    analyze.add_argument("--dead-air-s", type=float, default=3.0, help="shortest dead air (default 3)")
    analyze.add_argument("--tail-ms", type=float, default=128.0, help="echo tail after the bulk delay (default 128)")
    analyze.set_defaults(handler=_analyze)


def _analyze(args: argparse.Namespace) -> int:
    for name, value, top in (("--overtalk-s", args.overtalk_s, 60), ("--dead-air-s", args.dead_air_s, 600)):
        if not 0.01 <= value <= top:  # also refuses NaN
            raise UsageError(f"{name} {value:g}: expected 0.01..{top}")
    if not 1 <= args.tail_ms <= 1000:
        raise UsageError(f"--tail-ms {args.tail_ms:g}: expected 1..1000")

    from offhook.audio.analytics import AnalyticsConfig, analyze
    from offhook.commands.audio import read_pair

    mic, ref, mic_rate = read_pair(args.mic, args.ref)
    if len(mic) < mic_rate:
        raise UsageError(f"{args.mic}: {len(mic) / mic_rate:.2f} s of audio, need at least 1 s")
    config = AnalyticsConfig(overtalk_s=args.overtalk_s, dead_air_s=args.dead_air_s)
    figures = analyze(mic, ref, mic_rate, config, tail_ms=args.tail_ms).as_dict()
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        sys.stdout.write(render(figures))
    return 0


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _db(value: float | None, unit: str = "dBFS") -> str:
    return "-" if value is None else f"{value:.1f} {unit}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def render(f: dict) -> str:
    """The figures as an aligned, human-readable block."""
    q = f["quality"] or {}
    rows = [
        ("connected", f"{_s(f['connected_s'])} (hold excluded: {_s(f['hold_s'])})"),
        ("agent talk", f"{_s(f['agent_talk_s'])} ({_pct(f['agent_share'])})"),
        ("customer talk", f"{_s(f['customer_talk_s'])} ({_pct(f['customer_share'])})"),
        ("talking while muted", _s(f["talking_while_muted_s"])),
        (
            "overtalk",
            f"{f['overtalk_count']}, {_s(f['overtalk_s'])} (started by the agent {f['overtalk_started_by_agent']}, "
            f"the customer {f['overtalk_started_by_customer']})",
        ),
        ("dead air", f"{f['dead_air_count']}, {_s(f['dead_air_s'])} (longest {_s(f['dead_air_longest_s'])})"),
        (
            "response time",
            f"median {_s(f['response_median_s'])} over {f['response_count']} customer turns",
        ),
        (
            "longest monologue",
            f"agent {_s(f['agent_longest_monologue_s'])}, customer {_s(f['customer_longest_monologue_s'])}",
        ),
        ("holds", f"{f['holds']} (missed check-ins {f['missed_checkins']})"),
        ("mic noise floor", _db(q.get("noise_floor_dbfs"))),
        ("mic clipping", f"{q.get('clipping_pct', 0.0):.2f} % of samples"),
        ("echo reduction", _db(q.get("echo_reduction_db"), "dB")),
        ("speech levels", f"agent {_db(q.get('agent_level_dbfs'))}, customer {_db(q.get('customer_level_dbfs'))}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "".join(f"{name:<{width}}  {value}\n" for name, value in rows)
