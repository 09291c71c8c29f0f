"""README.md stays true to the tree: every repository path it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: Paths inside the repository as the README writes them in backquotes.
_PATH = re.compile(r"`((?:soapd|tests|bench|systemd|config|docs)/[\w./-]*)`")


def test_every_path_the_readme_names_exists() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    named = sorted(set(_PATH.findall(text)))
    assert len(named) > 10, "the README names almost no paths: is the pattern still right?"
    missing = [p for p in named if not any(ROOT.glob(p.rstrip("/")))]
    assert not missing, f"README.md names paths that do not exist: {missing}"
