"""`offhook fleet provision`: what a stock-MicroPython board receives over its raw REPL
(a fake REPL here; mpremote drives a real one), and that the result boots on the VM."""

from __future__ import annotations

import json

import pytest

from offhook import bundle as B
from offhook.cli import main
from offhook.fleet import build, provision
from offhook.vm import MicroPythonVM
from tests.fleet import keyring


class FakeRepl:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.calls: list[str] = []

    def enter_raw_repl(self, soft_reset: bool = True) -> None:
        self.calls.append("enter")

    def exit_raw_repl(self) -> None:
        self.calls.append("exit")

    def fs_mkdir(self, path: str) -> None:
        self.calls.append(f"mkdir {path}")

    def fs_writefile(self, dest: str, data: bytes, chunk_size: int = 256) -> None:
        self.files[dest] = data

    def exec(self, command: str) -> None:
        self.calls.append("exec")

    def close(self) -> None:
        self.calls.append("close")


def test_plan_has_loader_factory_image_and_key_store() -> None:
    files = provision.plan("pico", keyring.n_hex(0))
    assert json.loads(files["/keys.json"]) == {"n": keyring.n_hex(0)}
    for path in ("/boot.py", "/main.py"):
        assert files[path].startswith(b"#"), f"{path} stays source"
    for path in ("/loader.mpy", "/lib/bootsel.mpy", "/lib/updater.mpy", "/lib/bundle.mpy", "/offhook_fw/app.mpy"):
        assert files[path][:2] == b"M\x06", path
    assert "/boards/pico.mpy" in files and "/boards/esp32s3.mpy" not in files and "/boards/sim.mpy" not in files
    assert not any(path.startswith(("/slot_", "/sim/")) for path in files)
    state = json.loads(files["/boot_state.json"])
    assert (state["active"], state["confirmed"], state["version"]) == ("factory", True, provision.firmware_version())


def test_install_writes_every_file_inside_the_raw_repl() -> None:
    files = provision.plan("esp32s3", keyring.n_hex(0))
    repl = FakeRepl()
    provision.install(repl, files)
    assert repl.files == files
    assert repl.calls[0] == "enter" and repl.calls[-1] == "exit"


def test_bad_key_or_board_is_refused() -> None:
    with pytest.raises(B.BundleError):
        provision.plan("pico", "abcd")
    with pytest.raises(B.BundleError):
        provision.plan("sim", keyring.n_hex(0))


def test_cli_without_a_board_reports_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    pub = tmp_path / "k.pub"
    pub.write_text("not a key")
    assert main(["fleet", "provision", "--port", "/dev/null", "--board", "pico", "--pubkey", str(pub)]) == 2
    assert "not a PEM public key" in capsys.readouterr().err


def test_provisioned_files_boot_the_factory_image_on_the_vm(mpvm: MicroPythonVM) -> None:
    """The provisioned tree (pico files + the VM's machine/sim board) runs boot.py and the app."""
    files = provision.plan("pico", keyring.n_hex(0))
    sim = build.compile_files({"/boards/sim.py": build.device_files(sim=True)["/boards/sim.py"]})
    extra = {"/lib/machine.py": (build.firmware_root() / "sim/machine.py").read_bytes()}
    mpvm.put_files({**files, **sim, **extra})
    code = (
        "import sys\nsys.path.insert(0, '/lib')\nsys.path.insert(0, '/')\n"
        "import boot, bootsel\n"
        "from offhook_fw import app\n"
        "a = app.create('sim')\n"
        "print(bootsel.BOOT[0], bootsel.health(), bootsel.public_key() is not None)"
    )
    assert mpvm.run(code).check().split() == ["factory", "confirmed", "True"]


def test_simulated_units_take_the_key_from_the_environment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    from offhook.sim.unit import SimulatedUnit

    pub = tmp_path / "it.key.pub"
    pub.write_bytes(
        keyring.key(0)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    monkeypatch.setenv("OFFHOOK_SIM_PUBKEY", str(pub))
    unit = SimulatedUnit("00000000000000aa", tmp_path / "unit")
    unit.provision()
    assert json.loads((tmp_path / "unit/files/keys.json").read_text()) == {"n": keyring.n_hex(0)}
    assert (tmp_path / "unit/files/boot.py").exists()
