"""Drive the real MicroPython VM (WebAssembly port under Node.js) from Python.

Tests and tools use this to run firmware code on the same VM the simulator uses:
load files into its filesystem, run code (sync or async), read what it printed and
the exception it raised, and see whether it outgrew the board's heap.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

VM_DIR = Path(__file__).resolve().parent
RUNNER = VM_DIR / "runner.mjs"
# Free heap a MicroPython 1.27 RP2040 build gives applications (~190 KB).
RP2040_HEAP_BYTES = 190 * 1024


class VMUnavailable(RuntimeError):
    """Node.js or the npm MicroPython package is missing."""


class VMError(RuntimeError):
    """The runner itself failed (not a Python exception inside the VM)."""


@dataclass
class RunResult:
    stdout: str
    error: str | None  # the MicroPython traceback, if the code raised
    heap_total: int
    heap_initial: int

    @property
    def heap_grew(self) -> bool:
        """True when the code needed more heap than the board has (MemoryError there)."""
        return self.heap_total > self.heap_initial

    @property
    def exception_type(self) -> str | None:
        if not self.error:
            return None
        last = self.error.strip().splitlines()[-1]
        return last.split(":", 1)[0].strip()

    def check(self) -> str:
        """Return stdout, or raise AssertionError with the VM's traceback."""
        if self.error:
            raise AssertionError(f"MicroPython raised:\n{self.error}\nstdout:\n{self.stdout}")
        return self.stdout


def node_modules_present() -> bool:
    return (VM_DIR / "node_modules" / "@micropython" / "micropython-webassembly-pyscript").is_dir()


class MicroPythonVM:
    """One Node.js process hosting a MicroPython VM; ``reset`` makes a fresh VM cheaply."""

    def __init__(self, heap_bytes: int = RP2040_HEAP_BYTES, node: str = "node") -> None:
        node_path = shutil.which(node)
        if node_path is None:
            raise VMUnavailable("Node.js not found: install it (make venv does) to run the MicroPython VM")
        if not node_modules_present():
            raise VMUnavailable(f"MicroPython VM package missing: run `npm ci` in {VM_DIR}")
        self.heap_bytes = heap_bytes
        self._next_id = 0
        self._process = subprocess.Popen(
            [node_path, str(RUNNER)],
            cwd=VM_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # Node's errors include the whole minified module
            text=True,
        )
        self.reset()

    def _request(self, op: str, **fields: object) -> dict:
        if self._process.poll() is not None:
            raise VMError(f"MicroPython VM process exited with {self._process.returncode}")
        self._next_id += 1
        request = {"id": self._next_id, "op": op, **fields}
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise VMError("MicroPython VM process closed its output")
        reply = json.loads(line)
        if reply.get("id") != self._next_id:
            raise VMError(f"out-of-order reply {reply!r}")
        if not reply.get("ok"):
            raise VMError(reply.get("error", "unknown runner error"))
        return reply

    def reset(self) -> None:
        """A fresh VM: empty filesystem, fresh heap of ``heap_bytes``."""
        self._request("load", heapsize=self.heap_bytes)

    def put(self, path: str, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        self._request("put", files={path: base64.b64encode(raw).decode()})

    def put_files(self, files: dict[str, bytes]) -> None:
        encoded = {path: base64.b64encode(data).decode() for path, data in files.items()}
        self._request("put", files=encoded)

    def put_tree(self, source: Path, dest: str = "/", suffixes: tuple[str, ...] = (".py", ".mpy", ".json")) -> None:
        files = {}
        for path in sorted(source.rglob("*")):
            if path.is_file() and path.suffix in suffixes and "__pycache__" not in path.parts:
                files[dest.rstrip("/") + "/" + path.relative_to(source).as_posix()] = path.read_bytes()
        self.put_files(files)

    def run(self, code: str, is_async: bool = False) -> RunResult:
        reply = self._request("run", code=code, **{"async": is_async})
        return RunResult(reply["stdout"], reply["error"], reply["heap_total"], reply["heap_initial"])

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin
            self._process.stdin.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> MicroPythonVM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
