"""Child processes that never outlive their parent (helper servers, test rigs, the demo)."""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux only)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def child_preexec() -> Callable[[], None] | None:
    """The ``preexec_fn`` for subprocess.Popen: die_with_parent on Linux, nothing elsewhere."""
    return die_with_parent if sys.platform == "linux" else None
