""".dockerignore: the build context is what the Dockerfile copies, and never the virtualenv."""
from __future__ import annotations

import re

from tests.support import ROOT

IGNORE = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith("#")]


def _copied_sources() -> set[str]:
    joined = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    sources = set()
    for line in joined.splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            args = [word for word in words[1:] if not word.startswith("--")]
            sources.update(source.rstrip("/") for source in args[:-1])
    return sources


def test_everything_is_left_out_but_what_the_dockerfile_copies():
    assert IGNORE[0] == "*"
    kept = {line[1:].rstrip("/") for line in IGNORE if line.startswith("!")}
    assert _copied_sources() == kept


def test_the_virtualenv_and_bytecode_stay_out():
    kept = {line[1:].rstrip("/") for line in IGNORE if line.startswith("!")}
    assert not any(path.startswith((".venv", "build", "bench", "tests")) for path in kept)
    assert "**/__pycache__" in IGNORE
