"""The vendored Plotly bundle is the file its provenance names (soapd/web/vendor/PROVENANCE.md)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from soapd.web.app import plotly_js_path

VENDOR = Path(plotly_js_path()).parent


def _sums() -> dict[str, str]:
    text = (VENDOR / "PROVENANCE.md").read_text(encoding="utf-8")
    return dict(re.findall(r"sha256 of `([^`]+)`: `([0-9a-f]{64})`", text))


def test_vendored_files_match_the_sums_in_their_provenance() -> None:
    sums = _sums()
    assert set(sums) == {"plotly-gl2d.min.js", "plotly-LICENSE.txt"}
    for name, expected in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == expected, name


def test_bundle_is_the_gl2d_build_of_the_version_in_the_provenance() -> None:
    version = re.search(r"plotly\.js \*\*([0-9.]+)\*\*", (VENDOR / "PROVENANCE.md").read_text())
    assert version is not None
    head = plotly_js_path().read_bytes()[:200].decode()
    assert f"plotly.js (gl2d - minified) v{version.group(1)}" in head
    assert "MIT" in (VENDOR / "plotly-LICENSE.txt").read_text(encoding="utf-8")
