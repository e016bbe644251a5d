"""The reference systems the benchmark runs on the same scenarios as offhook.

- SpeexDSP's MDF echo canceller, alone and followed by its preprocessor (denoise + residual
  echo suppression), through ctypes on Debian's libspeexdsp.
- WebRTC audio processing 0.3 (Debian's libwebrtc-audio-processing): AEC with extended filter and
  delay-agnostic mode, noise suppression, high-pass; through the small C++ shim in shim/ that the
  Makefile builds into .make/audio-shim/.
- WebRTC AEC3 (webrtc-audio-processing 2.1 via PyPI ``aec-audio-processing``, built once and
  cached as a wheel in .make/wheels by ``make bench``).

Every system gets 10 ms int16 frames at 16 kHz and no delay hint; automatic gain control is off
everywhere so that level-based metrics compare like with like.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

Float = NDArray[np.float64]
REPO = Path(__file__).resolve().parents[3]
SHIM = REPO / ".make" / "audio-shim" / "libwebrtc03shim.so"
FRAME = 160
RATE = 16000

Processor = Callable[[Float, Float], Float]


def _to_i16(x: Float) -> NDArray[np.int16]:
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def _frames(mic: Float, ref: Float) -> tuple[NDArray[np.int16], NDArray[np.int16], int]:
    n = len(mic) // FRAME * FRAME
    return _to_i16(mic[:n]), _to_i16(ref[:n]), n


def speex(filter_ms: float, preprocess: bool) -> Processor:
    lib = ctypes.CDLL(ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1")
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_preprocess_state_init.restype = ctypes.c_void_p
    lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_preprocess_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.speex_preprocess_state_destroy.argtypes = [ctypes.c_void_p]
    set_rate, set_echo_state = 24, 24  # SPEEX_ECHO_SET_SAMPLING_RATE, SPEEX_PREPROCESS_SET_ECHO_STATE

    def run(mic: Float, ref: Float) -> Float:
        m, r, n = _frames(mic, ref)
        out = np.zeros(n, dtype=np.int16)
        st = lib.speex_echo_state_init(FRAME, int(filter_ms * RATE / 1000))
        rate = ctypes.c_int(RATE)
        lib.speex_echo_ctl(st, set_rate, ctypes.byref(rate))
        pp = None
        if preprocess:
            pp = lib.speex_preprocess_state_init(FRAME, RATE)
            lib.speex_preprocess_ctl(pp, set_echo_state, ctypes.c_void_p(st))
        buf = np.zeros(FRAME, dtype=np.int16)
        for i in range(0, n, FRAME):
            mf = np.ascontiguousarray(m[i : i + FRAME])
            rf = np.ascontiguousarray(r[i : i + FRAME])
            lib.speex_echo_cancellation(st, mf.ctypes.data, rf.ctypes.data, buf.ctypes.data)
            if pp is not None:
                lib.speex_preprocess_run(pp, buf.ctypes.data)
            out[i : i + FRAME] = buf
        if pp is not None:
            lib.speex_preprocess_state_destroy(pp)
        lib.speex_echo_state_destroy(st)
        return np.concatenate((out.astype(np.float64) / 32768, np.zeros(len(mic) - n)))

    return run


def webrtc03() -> Processor:
    if not SHIM.exists():
        raise RuntimeError(f"{SHIM} missing: build it with `make bench` (target .make/audio-shim)")
    lib = ctypes.CDLL(str(SHIM))
    lib.w03_create.restype = ctypes.c_void_p
    lib.w03_create.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.w03_process.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.w03_destroy.argtypes = [ctypes.c_void_p]

    def run(mic: Float, ref: Float) -> Float:
        m, r, n = _frames(mic, ref)
        out = np.zeros(n, dtype=np.int16)
        handle = lib.w03_create(RATE, 1)
        buf = np.zeros(FRAME, dtype=np.int16)
        for i in range(0, n, FRAME):
            mf = np.ascontiguousarray(m[i : i + FRAME])
            rf = np.ascontiguousarray(r[i : i + FRAME])
            rc = lib.w03_process(handle, rf.ctypes.data, mf.ctypes.data, buf.ctypes.data)
            if rc != 0:
                raise RuntimeError(f"webrtc 0.3 ProcessStream returned {rc}")
            out[i : i + FRAME] = buf
        lib.w03_destroy(handle)
        return np.concatenate((out.astype(np.float64) / 32768, np.zeros(len(mic) - n)))

    return run


def aec3() -> Processor:
    from aec_audio_processing import AudioProcessor  # type: ignore[import-not-found]

    def run(mic: Float, ref: Float) -> Float:
        m, r, n = _frames(mic, ref)
        ap = AudioProcessor(enable_aec=True, enable_ns=True, ns_level=1, enable_agc=False, enable_vad=False)
        ap.set_stream_format(RATE, 1)
        ap.set_reverse_stream_format(RATE, 1)
        ap.set_stream_delay(0)
        out = np.zeros(n, dtype=np.int16)
        for i in range(0, n, FRAME):
            ap.process_reverse_stream(r[i : i + FRAME].tobytes())
            processed = ap.process_stream(m[i : i + FRAME].tobytes())
            out[i : i + FRAME] = np.frombuffer(processed, dtype=np.int16)[:FRAME]
        return np.concatenate((out.astype(np.float64) / 32768, np.zeros(len(mic) - n)))

    return run
