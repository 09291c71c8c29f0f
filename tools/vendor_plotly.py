"""Refresh the Plotly bundle that ``soapd web`` serves (``soapd/web/vendor/``).

The pages need two trace types, ``scatter`` (SVG: limits as arrows, error bars)
and ``scattergl`` (WebGL: thousands of detections). plotly.js publishes a
partial bundle with exactly these (plus ``splom`` and ``parcoords``):
``dist/plotly-gl2d.min.js``, 1.5 MB against 4.8 MB for the full bundle that the
``plotly`` Python package ships. Chromium compiles the smaller script about a
second faster on a first visit (``bench/README.md``, "Web pages").

This script downloads the official npm tarball of ``plotly.js`` (no npm needed),
checks it against the registry's published ``sha512`` integrity, extracts the
gl2d bundle and the licence, and rewrites ``PROVENANCE.md``::

    python tools/vendor_plotly.py 4.1.1

The network is needed only here, never at run time or in the tests.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import tarfile
import urllib.request
from pathlib import Path

REGISTRY = "https://registry.npmjs.org/plotly.js"
VENDOR = Path(__file__).resolve().parents[1] / "soapd" / "web" / "vendor"
BUNDLE = "plotly-gl2d.min.js"
LICENCE = "plotly-LICENSE.txt"


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - fixed https URL
        data: bytes = response.read()
    return data


def fetch(version: str) -> tuple[bytes, bytes, str, str]:
    """Return (bundle, licence, tarball URL, integrity) of plotly.js ``version``, verified."""
    meta = json.loads(_get(f"{REGISTRY}/{version}"))
    tarball_url: str = meta["dist"]["tarball"]
    integrity: str = meta["dist"]["integrity"]
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise SystemExit(f"unexpected integrity algorithm {algorithm!r} for plotly.js {version}")
    tarball = _get(tarball_url)
    actual = base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if actual != expected:
        raise SystemExit(f"{tarball_url}: sha512 {actual} is not the registry's {expected}")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        bundle = tar.extractfile(f"package/dist/{BUNDLE}")
        licence = tar.extractfile("package/LICENSE")
        if bundle is None or licence is None:
            raise SystemExit(f"{tarball_url} has no dist/{BUNDLE} or LICENSE")
        return bundle.read(), licence.read(), tarball_url, integrity


def provenance(version: str, bundle: bytes, licence: bytes, url: str, integrity: str) -> str:
    """Return the text of ``PROVENANCE.md`` for the vendored files."""
    return f"""# Vendored Plotly bundle

`{BUNDLE}` is plotly.js **{version}**'s official "gl2d" partial bundle
(`package/dist/{BUNDLE}` of the npm tarball, unchanged), with its licence
`{LICENCE}` (MIT, `package/LICENSE`). soapd serves it at `/static/vendor/{BUNDLE}`
to the target page; no CDN, no internet.

- tarball: {url}
- registry integrity of the tarball: `{integrity}`
- sha256 of `{BUNDLE}`: `{hashlib.sha256(bundle).hexdigest()}` ({len(bundle):,} bytes)
- sha256 of `{LICENCE}`: `{hashlib.sha256(licence).hexdigest()}`

Traces in the bundle: scatter, scattergl, splom, parcoords (and the calendars
component). The page uses scatter (limits as arrows, error bars) and scattergl
(large detection traces). Why a partial bundle: the full `plotly.min.js` (4.8 MB)
took ~1.1 s of a first visit to load and compile on a 2-core machine
(`bench/README.md`, "Web pages").

Refresh with `python tools/vendor_plotly.py VERSION` (downloads and checks the
tarball, rewrites this file); `tests/unit/web/test_vendor.py` checks the files
against the sums above.
"""


def main() -> None:
    """Download, verify and write the bundle, the licence and PROVENANCE.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", help="plotly.js version on npm, e.g. 4.1.1")
    args = parser.parse_args()
    bundle, licence, url, integrity = fetch(args.version)
    VENDOR.mkdir(parents=True, exist_ok=True)
    (VENDOR / BUNDLE).write_bytes(bundle)
    (VENDOR / LICENCE).write_bytes(licence)
    (VENDOR / "PROVENANCE.md").write_text(
        provenance(args.version, bundle, licence, url, integrity), encoding="utf-8"
    )
    print(f"wrote {VENDOR / BUNDLE} ({len(bundle):,} bytes) from plotly.js {args.version}")


if __name__ == "__main__":
    main()
