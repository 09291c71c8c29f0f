"""The real SAAO 1.0 m raw frame: overscan subtraction, trimming and the CCD noise equation.

Reference: /work/shared/data/README.md section 2 (copied in tests/data/images): overscan
median 214 ADU; trimmed sky 85.9 ADU with rms 7.24 ADU, while sqrt(sky g + RN^2) / g with
GAIN 1.9 and RDNOISE 5.0 predicts 7.22 ADU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soapd.pipeline import STAGES, process_frame, run_frame
from soapd.pipeline.context import Context

RAW = Path(__file__).resolve().parents[1] / "data" / "images" / "saao1m_a8280271_raw.fits"


def _until(stage: str, config) -> Context:
    names = [name for name, _ in STAGES]
    ctx, _ = run_frame(Context(path=RAW, config=config), STAGES[: names.index(stage) + 1])
    return ctx


def test_overscan_is_214_adu_and_frame_is_trimmed(config) -> None:
    """Overscan median 214 ADU (tolerance 0.5 ADU); TRIMSEC [17:528,1:520] -> 520 x 512."""
    frame = _until("load", config(frame={"overscan": True})).frame
    assert frame is not None
    assert frame.overscan_adu == pytest.approx(214.0, abs=0.5)
    assert frame.shape == (520, 512)
    assert (frame.gain_e_per_adu, frame.read_noise_e) == (1.9, 5.0)


def test_sky_noise_agrees_with_ccd_equation(config) -> None:
    """sep's sky rms 7.24 ADU vs the CCD equation's 7.22 ADU (each within 0.03 ADU; they
    agree within 1 %). The sky after overscan subtraction is 85.9 ADU (within 0.3 ADU).
    """
    cfg = config(frame={"overscan": True}, extraction={"blank_sky_correction": False})
    ctx = _until("background", cfg)
    frame, bkg = ctx.frame, ctx.background
    assert frame is not None
    assert bkg is not None
    g = frame.gain_e_per_adu
    sky_adu = bkg.global_back_e / g
    measured_adu = bkg.global_rms_e / g
    predicted_adu = np.sqrt(bkg.global_back_e + frame.read_noise_e**2) / g
    assert sky_adu == pytest.approx(85.9, abs=0.3)
    assert measured_adu == pytest.approx(7.24, abs=0.03)
    assert predicted_adu == pytest.approx(7.22, abs=0.03)
    assert measured_adu == pytest.approx(predicted_adu, rel=0.01)


def test_raw_frame_without_overscan_config_keeps_pedestal(config) -> None:
    """Without [frame].overscan the 214 ADU pedestal stays in the sky (~300 ADU)."""
    ctx = _until("background", config())
    assert ctx.frame is not None
    assert ctx.background is not None
    assert ctx.frame.shape == (520, 536)
    assert ctx.background.global_back_e / 1.9 > 290


def test_process_raw_frame_without_wcs_end_to_end(config) -> None:
    """The whole pipeline on the raw frame: about 21 sources at 5 sigma, no WCS, no error.

    The README's 21 is ``sep.extract`` at 5 x the global RMS, which is SExtractor's
    threshold and now soapd's (``thresh_sigma`` 5 with ``noise = "global"``: 21). With
    the RMS map the frame's last rows (a bright strip at y > 505) break into about ten
    more pieces at this high threshold.
    """
    cfg = config(frame={"overscan": True}, extraction={"thresh_sigma": 5.0, "noise": "global"})
    result = process_frame(RAW, config=cfg)
    assert not result.summary.has_wcs
    assert 15 <= result.summary.n_sources <= 30
    assert result.summary.band == "Open"
