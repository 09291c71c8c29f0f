"""extraction.thresh_sigma means SExtractor's DETECT_THRESH (issue #10).

Before #10 sep's matched filter compared the filtered image with the *filtered* noise, so
``thresh_sigma = 3`` behaved like DETECT_THRESH 1.1 and a pure-noise 2k frame gave about
50 sources, where SExtractor at 1.5 or 3 finds none.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from scipy.spatial import cKDTree

from soapd.models import Target
from soapd.pipeline import process_frame
from soapd.testing.synth import make_frame, make_header, wcs_of, write_frame


@pytest.mark.parametrize("thresh", [None, 3.0])
def test_pure_noise_2k_frame_has_no_sources(tmp_path, config, thresh) -> None:
    """Reference: SExtractor finds 0 sources at DETECT_THRESH 1.5 or 3 (issue #10).
    Tolerance: 0. Measured at the default 1.5 (4 noise realisations with sep directly):
    0, 0, 0, 0; the old matched-filter 3 sigma gave 42-71."""
    frame = make_frame((2048, 2048), stars=None, seed=11, sky_e=300.0, read_noise_e=6.0)
    path = write_frame(tmp_path / "noise.fits", frame.data_adu, frame.header)
    cfg = config() if thresh is None else config(extraction={"thresh_sigma": thresh})
    result = process_frame(path, config=cfg)
    assert result.summary.n_sources == 0
    assert "no sources detected" in result.summary.notes


def test_threshold_is_in_units_of_the_unfiltered_pixel_rms(tmp_path, config) -> None:
    """A flat 30x30 px plateau 3 sigma_pixel high: the filtered image is 3 sigma_pixel there
    (the kernel has unit sum), so it is detected at thresh_sigma 2 and not at 4.5, where the
    matched filter (noise 0.375 sigma_pixel after the 3x3 filter) would see 8 sigma."""
    rng = np.random.default_rng(3)
    data = rng.normal(1000.0, 10.0, (256, 256))
    data[100:130, 100:130] += 30.0
    header = make_header((256, 256), gain_e_per_adu=1.0, saturation_adu=None)
    path = write_frame(tmp_path / "plateau.fits", data.astype(np.float32), header)
    found = {
        t: process_frame(path, config=config(extraction={"thresh_sigma": t})).summary.n_sources
        for t in (2.0, 4.5)
    }
    assert found[2.0] >= 1
    assert found[4.5] == 0


def test_faint_end_completeness_of_useful_detections(tmp_path, config) -> None:
    """Stars of V 19-22 on a 1k frame (FWHM 3.5 px, sky 300 e-; S/N 5 at V ~ 20.3): every
    star the pipeline measures at S/N >= 5 (forced photometry at the true position) should
    be detected. Tolerance: >= 97 %. Measured on this frame: 98.9 % of 262 (the old
    matched filter at 3: 100 % of 254). The price of 0 false detections is the very faint
    end: 50 % completeness moves from V ~ 20.9 to ~ 20.4 (0.4 mag; on a 2k frame with 2,500
    stars, m50 20.92 -> 20.52 and 98.6 % of the S/N >= 5 stars found, sep directly).
    """
    rng = np.random.default_rng(2)
    grid = np.arange(30.0, 1000.0, 40.0)
    gx, gy = np.meshgrid(grid, grid)
    x = gx.ravel() + rng.uniform(-3, 3, gx.size)
    y = gy.ravel() + rng.uniform(-3, 3, gx.size)
    stars = Table({"x": x, "y": y, "mag": rng.uniform(19.0, 22.0, x.size)})
    frame = make_frame((1024, 1024), stars=stars, seed=5, fwhm_px=3.5)
    path = write_frame(tmp_path / "faint.fits", frame.data_adu, frame.header)
    ra, dec = wcs_of(frame.header).all_pix2world(x, y, 0)
    targets = [
        Target(name=f"s{i}", ra_deg=r, dec_deg=d)
        for i, (r, d) in enumerate(zip(ra, dec, strict=True))
    ]
    t = process_frame(path, config=config(), targets=targets, zeropoint=23.0).table
    forced = t[t["is_forced"]]
    forced = forced[np.argsort([int(n[1:]) for n in forced["target_name"]])]
    det = t[~t["is_forced"]]
    dist, _ = cKDTree(np.column_stack([det["x_pix"], det["y_pix"]])).query(np.column_stack([x, y]))
    useful = np.asarray(forced["snr"]) >= 5.0
    assert useful.sum() > 150
    assert np.mean(dist[useful] < 2.0) >= 0.97
