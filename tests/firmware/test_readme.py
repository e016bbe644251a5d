"""firmware/README.md's file map names every file in firmware/ and the shared ones the build
stages, and names nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

from offhook.firmware import SHARED
from tests.conftest import REPO_ROOT

FIRMWARE = REPO_ROOT / "firmware"


def _named() -> set[str]:
    """File names and paths in the README's first code block: the file map."""
    file_map = (FIRMWARE / "README.md").read_text().split("```\n", 2)[1]
    return set(re.findall(r"[\w/]+\.(?:py|md|ini|toml)", file_map))


def _files() -> list[Path]:
    return [
        p
        for p in FIRMWARE.rglob("*")
        if p.is_file() and not any(part.startswith((".", "__pycache__")) for part in p.relative_to(FIRMWARE).parts)
    ]


def test_the_file_map_names_every_file() -> None:
    named = _named()
    missing = [p.name for p in _files() if p.name != "README.md" and not {p.name, f"/lib/{p.name}"} & named]
    assert missing == []
    assert set(SHARED) <= named


def test_the_file_map_names_only_what_exists() -> None:
    real = {p.name for p in _files()} | set(SHARED)
    assert (
        sorted(n for n in _named() if n not in real and not any((d / n).is_file() for d in (FIRMWARE, REPO_ROOT))) == []
    )
