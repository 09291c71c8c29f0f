"""A small field at skynetsoap's README target, served by the fake Skynet, for tests/compat.

skynetsoap's README measures ``SkyCoord("12:49:37.598", "-63:32:09.8")`` on
observation 11920699 and debugs ``soap_images/12345/r67890.fits``. Both
observations are served here: three V frames each (256 x 256 px, 1 arcsec/px)
centred on that target, with a 15th-magnitude star on it and 40 catalog stars
whose APASS-named ECSV catalog calibrates offline. Observation 12345 has
exposure 67890. The frames of the two observations differ (other noise seeds),
so no download is a duplicate of another.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table

from soapd.testing.fake_skynet import FakeSkynet
from soapd.testing.synth import make_frame, write_frame

#: skynetsoap README's target (Quick start).
TARGET = SkyCoord("12:49:37.598", "-63:32:09.8", unit=("hourangle", "deg"))
TARGET_MAG = 15.0
ZP_MAG = 22.0
GAIN = 1.5
READ_NOISE = 6.0
EXPTIME_S = 30.0
START_UTC = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)
#: Observation id -> its exposure ids (README: 11920699; 12345 with exposure 67890).
OBSERVATIONS = {11920699: (1192069901, 1192069902, 1192069903), 12345: (67889, 67890, 67891)}


@dataclass(frozen=True)
class ReadmeField:
    """The served field: the fake server, its catalog and the config file pointing at both."""

    fake: FakeSkynet
    catalog_path: Path
    config_path: Path


def _catalog(rng: np.random.Generator) -> Table:
    ra0, dec0 = float(TARGET.ra.deg), float(TARGET.dec.deg)
    ras: list[float] = []
    decs: list[float] = []
    while len(ras) < 40:
        dx, dy = rng.uniform(-100.0, 100.0, 2)
        if math.hypot(dx, dy) < 15.0:
            continue  # keep the target isolated
        ras.append(ra0 + dx / 3600.0 / math.cos(math.radians(dec0)))
        decs.append(dec0 + dy / 3600.0)
    v = rng.uniform(12.5, 17.0, len(ras))
    b_v = rng.uniform(0.3, 1.0, len(ras))
    tab = Table()
    tab["RAJ2000"], tab["DEJ2000"] = np.round(ras, 7), np.round(decs, 7)
    tab["Vmag"], tab["e_Vmag"] = np.round(v, 3), np.full(len(ras), 0.02)
    tab["Bmag"], tab["e_Bmag"] = np.round(v + b_v, 3), np.full(len(ras), 0.02)
    tab["B-V"], tab["e_B-V"] = np.round(b_v, 3), np.full(len(ras), 0.03)
    tab.meta["ID"] = "II_336_apass9"
    return tab


def _frame(catalog: Table, path: Path, seed: int, index: int) -> datetime:
    stars = Table(
        {
            "ra": [*catalog["RAJ2000"], float(TARGET.ra.deg)],
            "dec": [*catalog["DEJ2000"], float(TARGET.dec.deg)],
            "mag": [*catalog["Vmag"], TARGET_MAG],
        }
    )
    mid = START_UTC + timedelta(seconds=120 * index + EXPTIME_S / 2)
    synth = make_frame(
        (256, 256),
        stars=stars,
        sky_e=300.0,
        read_noise_e=READ_NOISE,
        gain_e_per_adu=GAIN,
        fwhm_px=3.5,
        exptime_s=EXPTIME_S,
        zeropoint_mag=ZP_MAG,
        center_ra_deg=float(TARGET.ra.deg),
        center_dec_deg=float(TARGET.dec.deg),
        date_obs=mid - timedelta(seconds=EXPTIME_S / 2),
        filter_name="V",
        telescope="Prompt5",
        seed=seed,
    )
    write_frame(path, synth.data_adu, synth.header)
    return mid


@pytest.fixture(name="readme_field")
def fixture_readme_field(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeField]:
    """The fake Skynet serving both README observations, and a soapd config file for it."""
    folder = tmp_path_factory.mktemp("readme-field")
    catalog = _catalog(np.random.default_rng(14))
    catalog_path = folder / "field_apass.ecsv"
    catalog.write(catalog_path, format="ascii.ecsv")
    with FakeSkynet() as fake:
        for n_obs, (obs_id, exp_ids) in enumerate(OBSERVATIONS.items()):
            fake.add_observation(obs_id, f"README observation {obs_id}")
            for i, exp_id in enumerate(exp_ids):
                path = folder / f"obs{obs_id}_{i}.fits"
                mid = _frame(catalog, path, seed=100 * n_obs + i, index=i)
                fake.add_exposure(
                    obs_id,
                    path.read_bytes(),
                    center_time_utc=mid,
                    exptime_s=EXPTIME_S,
                    telescope="Prompt5",
                    filter_name="V",
                    gain=GAIN,
                    read_noise=READ_NOISE,
                    exp_id=exp_id,
                    filename=path.name,
                    archived=True,
                )
        config_path = folder / "soapd.toml"
        config_path.write_text(
            f'[skynet]\napi_url = "{fake.url}"\nmax_attempts = 1\nbackoff_s = 0.0\n'
            f'[calibration]\ncatalog_files = ["{catalog_path}"]\nonline = false\n',
            encoding="utf-8",
        )
        yield ReadmeField(fake=fake, catalog_path=catalog_path, config_path=config_path)


@pytest.fixture(autouse=True)
def _restore_soapd_logger() -> Iterator[None]:
    """``Soap(verbose=True)`` sets the "soapd" logger's level; put it back after each test."""
    soapd_logger = logging.getLogger("soapd")
    level, handlers = soapd_logger.level, list(soapd_logger.handlers)
    yield
    soapd_logger.setLevel(level)
    for handler in soapd_logger.handlers:
        if handler not in handlers:
            soapd_logger.removeHandler(handler)
