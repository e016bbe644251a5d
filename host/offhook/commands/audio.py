"""`offhook audio`: process recordings offline, or run the real-time microphone chain."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offhook.audio import BACKENDS
from offhook.cli import UsageError

if TYPE_CHECKING:
    from offhook.audio.realtime import RecordingConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    audio = subparsers.add_parser("audio", help="echo canceller, noise gate and privacy mute")
    commands = audio.add_subparsers(title="audio commands", metavar="COMMAND")
    process = commands.add_parser(
        "process",
        help="clean a microphone recording using the far-end recording as echo reference",
        description="Offline: MIC.wav and REF.wav (mono, 16-bit, 16 or 48 kHz, same rate and length) -> OUT.wav.",
    )
    process.add_argument("mic", help="microphone recording (near end + echo + noise)")
    process.add_argument("ref", help="what the loudspeaker/earpiece played (far end)")
    process.add_argument("out", help="where to write the cleaned microphone signal")
    process.add_argument("--no-aec", action="store_true", help="skip the echo canceller")
    process.add_argument("--no-gate", action="store_true", help="skip the noise gate")
    process.add_argument("--no-ns", action="store_true", help="skip the noise suppressor")
    process.add_argument("--no-highpass", action="store_true", help="skip the 80 Hz high-pass filter")
    process.add_argument("--tail-ms", type=float, default=128.0, help="echo tail after the bulk delay (default 128)")
    process.set_defaults(handler=_process)

    run = commands.add_parser(
        "run",
        help="real-time chain between the headset and the softphone (PulseAudio/PipeWire)",
        description=(
            "Capture the headset microphone and the softphone's speaker output (echo reference), "
            "play the far end to the headset, and offer the cleaned microphone as a virtual source."
        ),
    )
    run.add_argument("--mic", default=None, help="headset microphone (PulseAudio source; default: server default)")
    run.add_argument("--speaker", default=None, help="headset playback sink (default: server default)")
    run.add_argument("--seconds", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)")
    run.add_argument("--no-aec", action="store_true")
    run.add_argument("--no-gate", action="store_true")
    run.add_argument("--no-ns", action="store_true", help="skip the noise suppressor")
    run.add_argument("--no-highpass", action="store_true", help="skip the 80 Hz high-pass filter")
    run.add_argument("--tail-ms", type=float, default=128.0)
    run.add_argument("--no-setup", action="store_true", help="do not load the virtual devices (already there)")
    run.add_argument("--rt-priority", type=int, default=0, help="SCHED_FIFO priority for the audio threads (0: off)")
    run.add_argument(
        "--queue-ms",
        type=float,
        default=20.0,
        help="pulse backend: audio held in the server before each write (default 20; lower is less latency "
        "and more underruns on a busy machine)",
    )
    run.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="audio I/O: libpulse directly (pulse), PortAudio via ALSA (portaudio), or pulse when a server answers "
        "(auto, the default)",
    )
    run.add_argument(
        "--no-record",
        action="store_true",
        help="do not record calls even when the config's [recording] is enabled (docs/recording.md)",
    )
    run.set_defaults(handler=_run)

    from offhook.commands import analyze  # `offhook audio analyze`: conversation analytics (issue 25)

    analyze.register(commands)


def read_pair(mic_path: Path, ref_path: Path) -> tuple[Any, Any, int]:
    """A microphone recording and its far-end reference: same rate, same length, or a one-line error."""
    from offhook.audio.wavio import WavError, read_wav

    try:
        mic, mic_rate = read_wav(mic_path)
        ref, ref_rate = read_wav(ref_path)
    except WavError as exc:
        raise UsageError(str(exc)) from None
    if mic_rate != ref_rate:
        raise UsageError(f"sample rates differ: {mic_path} is {mic_rate} Hz, {ref_path} is {ref_rate} Hz")
    if len(mic) != len(ref):
        raise UsageError(f"lengths differ: {mic_path} has {len(mic)} samples, {ref_path} has {len(ref)}")
    return mic, ref, mic_rate


def _process(args: argparse.Namespace) -> int:
    import numpy as np

    from offhook.audio.aec import AecConfig
    from offhook.audio.chain import ChainConfig, process_signals
    from offhook.audio.wavio import write_wav

    if args.tail_ms <= 0 or args.tail_ms > 1000:
        raise UsageError(f"--tail-ms {args.tail_ms}: expected 1..1000")
    mic, ref, mic_rate = read_pair(args.mic, args.ref)
    config = ChainConfig(
        rate=mic_rate,
        aec=not args.no_aec,
        gate=not args.no_gate,
        ns=not args.no_ns,
        highpass=not args.no_highpass,
        aec_config=AecConfig(tail_ms=args.tail_ms),
    )
    out = process_signals(mic, ref, config)
    try:
        write_wav(args.out, np.asarray(out), mic_rate)
    except OSError as exc:
        raise UsageError(f"{args.out}: cannot write ({exc.strerror})") from None
    return 0


def recording_config() -> RecordingConfig | None:
    """``[recording]`` from the daemon's config file (the one the daemon reads): None when off."""
    import getpass

    from offhook import config
    from offhook.audio.realtime import RecordingConfig

    try:
        settings = config.load()
    except config.ConfigError as exc:
        raise UsageError(str(exc)) from None
    if not settings["recording"]["enabled"]:
        return None
    from offhook.commands.recordings import default_directory

    agent = settings["agent"]["name"] or getpass.getuser()
    return RecordingConfig(default_directory(), settings["recording"]["recipient"], agent)


def _run(args: argparse.Namespace) -> int:
    import sys

    if not 6.0 <= args.queue_ms <= 500.0:  # the sink's own 5 ms is part of it
        raise UsageError(f"--queue-ms {args.queue_ms:g}: must be between 6 and 500")

    from offhook.audio.pulse import PulseError
    from offhook.audio.realtime import RealtimeConfig, run_forever

    config = RealtimeConfig(
        mic_device=args.mic,
        speaker_device=args.speaker,
        aec=not args.no_aec,
        gate=not args.no_gate,
        ns=not args.no_ns,
        highpass=not args.no_highpass,
        tail_ms=args.tail_ms,
        setup_devices=not args.no_setup,
        rt_priority=args.rt_priority,
        backend=args.backend,
        playback_queue_ms=args.queue_ms,
        recording=None if args.no_record else recording_config(),
    )
    try:
        return run_forever(config, seconds=args.seconds)
    except ImportError:
        print("offhook: error: pyaudio is not installed (pip install 'offhook[realtime]')", file=sys.stderr)
    except (PulseError, RuntimeError, OSError) as exc:
        print(f"offhook: error: audio devices: {exc}", file=sys.stderr)
    return 1
