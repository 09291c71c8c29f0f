"""Every Python example of skynetsoap's README runs on soapd with only its imports changed.

The 14 ``python`` blocks are read from skynetsoap 1.0.1's README
(tests/data/skynetsoap/README.md, see its PROVENANCE.md); in each, only the
lines ``from skynetsoap... import ...`` become ``from soapd... import ...``.
They run in order in one namespace, as a user pastes them into one session
(later blocks use ``s`` and ``result`` of earlier ones), in a fresh working
folder, with ``$SOAPD_CONFIG`` pointing at a fake Skynet on 127.0.0.1
(tests/compat/conftest.py: both README observations, centred on the README's
target) and ``$SKYNET_API_TOKEN`` set, as the README's API-token step says.
Each block's outputs are then checked: rows, files at skynetsoap's paths,
finite values where a frame measured something and NaN where none covered the
position, and the warnings it gave.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from astropy.table import Table

from soapd import NotCoveredWarning
from soapd.config import Config
from soapd.flags import Flag
from soapd.output.export import read_table
from tests.compat.conftest import OBSERVATIONS, ReadmeField

README = Path(__file__).parents[1] / "data" / "skynetsoap" / "README.md"
_IMPORT = re.compile(r"^(from|import) skynetsoap\b")


def readme_blocks() -> list[str]:
    """Return the README's ``python`` code blocks, verbatim."""
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def to_soapd(block: str) -> str:
    """Return ``block`` with only its skynetsoap import lines changed to soapd."""
    return "\n".join(
        _IMPORT.sub(lambda m: f"{m.group(1)} soapd", line) for line in block.splitlines()
    )


def _run(block: str, namespace: dict[str, Any]) -> tuple[str, list[warnings.WarningMessage]]:
    """Execute one example; return what it printed and the warnings it gave."""
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
        warnings.simplefilter("always")
        exec(compile(to_soapd(block), "<skynetsoap README>", "exec"), namespace)
    return out.getvalue(), list(caught)


def _kinds(caught: list[warnings.WarningMessage]) -> set[type[Warning]]:
    return {w.category for w in caught}


def _finite(values: Any) -> bool:
    return bool(np.all(np.isfinite(np.asarray(values, dtype=float))))


def test_the_readme_has_14_python_examples_and_only_imports_change() -> None:
    blocks = readme_blocks()
    assert len(blocks) == 14
    for block in blocks:
        changed = [
            (a, b)
            for a, b in zip(block.splitlines(), to_soapd(block).splitlines(), strict=True)
            if a != b
        ]
        assert all(_IMPORT.match(a) and "soapd" in b for a, b in changed)
    assert sum(1 for b in blocks if "skynetsoap" in b) == 6


def test_every_readme_example_runs_on_soapd(
    readme_field: ReadmeField, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOAPD_CONFIG", str(readme_field.config_path))
    monkeypatch.setenv("SKYNET_API_TOKEN", readme_field.fake.token)
    for name in ("SOAPD_SKYNET_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "my_config.toml").write_text('[aperture]\nmode = "fixed"\nfixed_radius = 4.0\n')
    blocks = readme_blocks()
    ns: dict[str, Any] = {}
    obs_a, obs_b = OBSERVATIONS
    n_frames = len(OBSERVATIONS[obs_a])

    # 1. Quick start: download, field-wide run, forced photometry at the target.
    _out, caught = _run(blocks[0], ns)
    assert not _kinds(caught)
    images = sorted((tmp_path / "soap_images" / str(obs_a)).glob("*.fits"))
    assert [p.name for p in images] == [f"r{e}.fits" for e in OBSERVATIONS[obs_a]]
    assert ns["s"].config.paths.state_dir == tmp_path / "soapd_data"
    field = Table.read(tmp_path / "all_sources.csv")
    assert len(field) > 3 * 30
    assert set(field["image_file"]) == {p.name for p in images}
    forced = Table.read(tmp_path / "target_forced.csv")
    assert len(forced) == n_frames  # one row per frame
    assert np.all(forced["is_detection"])
    assert _finite(forced["calibrated_mag"])
    assert _finite(forced["limiting_mag"])
    assert np.allclose(forced["calibrated_mag"], 15.0, atol=0.1)

    # 2. Field-wide photometry: a new Soap reuses the stored tables (nothing downloaded again).
    downloads = readme_field.fake.count("/download/fits")
    _out, caught = _run(blocks[1], ns)
    assert not _kinds(caught)
    assert readme_field.fake.count("/download/fits") == downloads
    assert len(ns["s"].last_run.reused) == n_frames
    assert len(ns["result"]) >= len(field)

    # 3. Single-target extraction from the field-wide result (radius 3 arcsec).
    _out, caught = _run(blocks[2], ns)
    assert not _kinds(caught)
    target = Table.read(tmp_path / "target.csv")
    assert len(target) == n_frames
    assert np.all(target["separation_arcsec"] < 3.0)
    assert _finite(target["calibrated_mag"])

    # 4. Plotting (MPLBACKEND=Agg: plt.show returns at once).
    _out, caught = _run(blocks[3], ns)
    assert not _kinds(caught)
    png = tmp_path / "soap_results" / str(obs_a) / "calibrated_mag_plot.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # 5. Export formats; the GCN table of the result's one forced position, t - T0 from MJD.
    _out, caught = _run(blocks[4], ns)
    assert not _kinds(caught)
    assert len(Table.read(tmp_path / "output.csv")) == len(ns["result"])
    assert len(Table.read(tmp_path / "output.ecsv")) == len(ns["result"])
    assert len(read_table(tmp_path / "output.parquet", fmt="parquet")) == len(ns["result"])
    gcn = (tmp_path / "gcn_table.txt").read_text()
    assert "V" in gcn
    assert re.search(r"\b15\.\d\d", gcn)  # the target's magnitude

    # 6. Multi-aperture photometry on observation 12345 (downloads it).
    _out, caught = _run(blocks[5], ns)
    assert _kinds(caught) == {DeprecationWarning}  # aperture.* -> photometry.*
    assert ns["cfg"].photometry.radii_px == [3.0, 5.0, 7.0, 10.0, 15.0]
    assert ns["cfg"].photometry.keep_all is False
    assert sorted(p.name for p in (tmp_path / "soap_images" / str(obs_b)).glob("*.fits")) == [
        f"r{e}.fits" for e in OBSERVATIONS[obs_b]
    ]
    res = ns["result"].table
    assert len(set(res["aperture_id"])) > 1  # best aperture per source, from five radii
    cog = ns["result_cog"].table
    assert len(cog) > len(res)  # every aperture kept
    assert set(ns["result_ap3"].table["aperture_id"]) == {2}
    assert np.allclose(ns["result_ap3"].table["aperture_radius"], 7.0)

    # 7. Forced photometry at two positions outside the field: warned, NaN limits, one row
    #    per frame marked not covered (skynetsoap: IndexError on [0]).
    out, caught = _run(blocks[6], ns)
    assert _kinds(caught) == {NotCoveredWarning}
    assert len([w for w in caught if w.category is NotCoveredWarning]) == 2
    assert out.strip() == "Limiting magnitude: nan mag"
    lc = ns["target"].table
    assert len(lc) == n_frames
    assert np.all((np.asarray(lc["flag"], dtype=np.int64) & Flag.NOT_COVERED) != 0)
    assert not np.any(lc["is_detection"])

    # 8. Debugging: the figure of a downloaded frame, then debug.enabled during run().
    _out, caught = _run(blocks[7], ns)
    assert _kinds(caught) == set()
    debug_dir = tmp_path / "soap_debug" / str(obs_b)
    assert (debug_dir / "r67890_debug.png").is_file()
    assert sorted(p.name for p in debug_dir.glob("*_debug.png")) == [
        f"r{e}_debug.png" for e in OBSERVATIONS[obs_b]
    ]

    # 9. Cache management: images of 12345 deleted without asking; then everything of it.
    out, caught = _run(blocks[8], ns)
    assert not _kinds(caught)
    assert "n_images" in out
    assert not list((tmp_path / "soap_images" / str(obs_b)).glob("*.fits"))
    assert list((tmp_path / "soap_images" / str(obs_a)).glob("*.fits"))  # other obs kept
    tables = ns["s"].store.frames_with_tables()
    assert not any(r["obs_id"] == obs_b for r in tables)  # cleanup_observation: results too
    assert any(r["obs_id"] == obs_a for r in tables)

    # 10. Disk budget: 2 GB is not exceeded, nothing is deleted.
    out, caught = _run(blocks[9], ns)
    assert not _kinds(caught)
    assert ns["stats"]["files_deleted"] == 0
    assert 0.0 < ns["stats"]["total_before_mb"] < 2048
    assert "observations_deleted" in out

    # 11. A TOML file in skynetsoap's layout.
    _out, caught = _run(blocks[10], ns)
    assert _kinds(caught) == {DeprecationWarning}
    assert ns["s"].config.photometry.aperture_mode == "fixed"
    assert ns["s"].config.photometry.fixed_radius_px == 4.0

    # 12. Overrides with SOAPConfig and soapd.config.load_config.
    _out, caught = _run(blocks[11], ns)
    assert _kinds(caught) == {DeprecationWarning}
    assert ns["cfg"].photometry.aperture_mode == "optimal"
    assert ns["cfg"].calibration.sigma_clip == 2.5
    assert issubclass(ns["SOAPConfig"], Config)

    # 13. AB/Vega: V rows converted to AB for one run, then by config (frames downloaded
    #     again after example 9 deleted them).
    _out, caught = _run(blocks[12], ns)
    assert _kinds(caught) == {DeprecationWarning}
    ab = ns["result"].table
    assert len(ab) > 0
    assert set(ab["cal_mag_system"]) == {"AB"}
    assert ns["s"].config.calibration.convert_to_ab is True
    assert len(ns["s"].last_run.processed) == n_frames

    # 14. Robust limiting magnitudes (max_draws_multiplier has no soapd setting: said so).
    _out, caught = _run(blocks[13], ns)
    assert _kinds(caught) == {DeprecationWarning, UserWarning}
    assert any("max_draws_multiplier" in str(w.message) for w in caught)
    limits = ns["cfg"].limits
    assert (limits.method, limits.n_samples, limits.mask_dilate_px) == ("robust", 2000, 3)
    assert (limits.edge_buffer_px, limits.sigma_estimator, limits.random_seed) == (25, "mad", 123)
    assert math.isfinite(float(limits.n_samples))
