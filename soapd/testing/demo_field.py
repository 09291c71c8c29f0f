"""The deterministic demo observation: a synthetic field, its catalog, and two transients.

:func:`build_demo_field` writes (on first use, into a folder of your choice) a
series of V-band frames of one field with :mod:`soapd.testing.synth`, plus the
field's reference catalog as an ECSV file in VizieR APASS DR9 naming
(``RAJ2000, DEJ2000, Vmag, e_Vmag, Bmag, ... B-V, e_B-V``; meta ``ID =
II_336_apass9``) so that calibration works offline
(``calibration.catalog_files``). The field holds:

* ``DEMO-FADER``: a transient that fades by a fixed step per frame;
* ``DEMO-RISER``: a source absent from the first half of the series that then
  appears at constant brightness;

and catalog stars whose true V magnitudes set the frames' fluxes through a
known zero point (``mag = zp - 2.5 log10(flux_e / exptime_s)``). Frames carry no
GAIN/RDNOISE keys, like archive frames that rely on the API's metadata; the
fake server's exposure records carry them. :func:`load_into` publishes the
frames on a :class:`~soapd.testing.fake_skynet.FakeSkynet` as ``completed``
exposures, to be released one by one.

Everything is derived from fixed seeds: the same version of soapd writes the
same bytes, so checksums repeat across runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.table import Table

from soapd.testing.fake_skynet import FakeSkynet
from soapd.testing.synth import make_frame, write_frame

__all__ = ["DEMO_VERSION", "DemoField", "DemoFrame", "DemoTarget", "build_demo_field", "load_into"]

#: Bump when the generated field changes, so old frames are rebuilt.
DEMO_VERSION = 1
_SEED = 20261124
_CENTRE_RA_DEG = 187.25
_CENTRE_DEC_DEG = -12.5
_SHAPE = (512, 512)
_PIXSCALE_ARCSEC = 1.0
_ZP_MAG = 22.0
_EXPTIME_S = 30.0
_CADENCE_S = 120.0
_START_UTC = datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)
_GAIN = 1.5
_READ_NOISE = 6.0
_N_STARS = 60
_FILTER = "V"
_TELESCOPE = "Prompt5"
OBS_ID = 11_920_699
OBS_NAME = "soapd demo field"


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoTarget:
    """A watched position in the demo field and its true V magnitude per frame (None: absent)."""

    name: str
    ra_deg: float
    dec_deg: float
    mags: tuple[float | None, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoFrame:
    """One demo exposure: its file and what the archive says about it."""

    index: int
    path: Path
    mid_time_utc: datetime
    exptime_s: float
    filter_name: str
    telescope: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoField:
    """The whole demo observation."""

    obs_id: int
    obs_name: str
    frames: tuple[DemoFrame, ...]
    targets: tuple[DemoTarget, ...]
    catalog_path: Path
    centre_ra_deg: float
    centre_dec_deg: float
    zeropoint_mag: float
    gain_e_per_adu: float
    read_noise_e: float


def _offset(ra0: float, dec0: float, dx_arcsec: float, dy_arcsec: float) -> tuple[float, float]:
    """Return (ra, dec) in deg offset by dx (east) and dy (north) arcsec from (ra0, dec0)."""
    dec = dec0 + dy_arcsec / 3600.0
    ra = ra0 + dx_arcsec / 3600.0 / math.cos(math.radians(dec0))
    return ra % 360.0, dec


def _targets(n_frames: int) -> tuple[DemoTarget, ...]:
    fader_ra, fader_dec = _offset(_CENTRE_RA_DEG, _CENTRE_DEC_DEG, 62.0, -47.0)
    riser_ra, riser_dec = _offset(_CENTRE_RA_DEG, _CENTRE_DEC_DEG, -88.0, 71.0)
    half = n_frames // 2
    return (
        DemoTarget(
            name="DEMO-FADER",
            ra_deg=fader_ra,
            dec_deg=fader_dec,
            mags=tuple(round(14.5 + 0.25 * i, 3) for i in range(n_frames)),
        ),
        DemoTarget(
            name="DEMO-RISER",
            ra_deg=riser_ra,
            dec_deg=riser_dec,
            mags=tuple(None if i < half else 15.5 for i in range(n_frames)),
        ),
    )


def _catalog(rng: np.random.Generator, targets: tuple[DemoTarget, ...]) -> Table:
    """Return catalog stars (true V and colours) at least 20 arcsec from the transients."""
    ras: list[float] = []
    decs: list[float] = []
    half_width_arcsec = 0.42 * _SHAPE[0] * _PIXSCALE_ARCSEC
    while len(ras) < _N_STARS:
        dx, dy = rng.uniform(-half_width_arcsec, half_width_arcsec, 2)
        ra, dec = _offset(_CENTRE_RA_DEG, _CENTRE_DEC_DEG, float(dx), float(dy))
        near = [
            math.hypot((ra - r) * 3600 * math.cos(math.radians(dec)), (dec - d) * 3600)
            for r, d in [(t.ra_deg, t.dec_deg) for t in targets] + list(zip(ras, decs, strict=True))
        ]
        if near and min(near) < 20.0:
            continue
        ras.append(ra)
        decs.append(dec)
    n = len(ras)
    v_true = rng.uniform(12.0, 17.5, n)
    b_v = rng.uniform(0.3, 1.2, n)
    e_v = 0.02 + 0.03 * (v_true - 12.0) / 5.5
    tab = Table()
    tab["RAJ2000"] = np.round(ras, 7)
    tab["DEJ2000"] = np.round(decs, 7)
    # Catalog values scatter around the truth by their stated errors.
    tab["Vmag"] = np.round(v_true + rng.normal(0.0, e_v), 3)
    tab["e_Vmag"] = np.round(e_v, 3)
    tab["Bmag"] = np.round(v_true + b_v + rng.normal(0.0, e_v), 3)
    tab["e_Bmag"] = np.round(e_v * 1.2, 3)
    # Approximate Jordi et al. (2006) transformations, good enough for a demo catalog.
    tab["g'mag"] = np.round(v_true + 0.630 * b_v - 0.124, 3)
    tab["e_g'mag"] = np.round(e_v, 3)
    tab["r'mag"] = np.round(v_true - 0.42 * b_v + 0.11, 3)
    tab["e_r'mag"] = np.round(e_v, 3)
    tab["i'mag"] = np.round(v_true - 0.8 * b_v + 0.35, 3)
    tab["e_i'mag"] = np.round(e_v * 1.5, 3)
    tab["B-V"] = np.round(b_v, 3)
    tab["e_B-V"] = np.round(e_v * 1.4, 3)
    tab.meta["ID"] = "II_336_apass9"
    tab.meta["name"] = "II/336/apass9"
    tab.meta["description"] = "soapd demo field: synthetic stars in VizieR APASS DR9 naming"
    tab.meta["v_true"] = [round(float(v), 4) for v in v_true]
    return tab


def _frame_stars(catalog: Table, targets: tuple[DemoTarget, ...], index: int) -> Table:
    ra = list(catalog["RAJ2000"])
    dec = list(catalog["DEJ2000"])
    mag = list(catalog.meta["v_true"])
    for target in targets:
        if target.mags[index] is not None:
            ra.append(target.ra_deg)
            dec.append(target.dec_deg)
            mag.append(target.mags[index])
    return Table({"ra": ra, "dec": dec, "mag": mag})


def _manifest(n_frames: int) -> dict[str, object]:
    return {"version": DEMO_VERSION, "n_frames": n_frames, "seed": _SEED}


def build_demo_field(directory: Path, *, n_frames: int = 12) -> DemoField:
    """Return the demo field stored in ``directory``, writing its files if they are missing.

    Frames are ``demo_NNN.fits`` (float32, 512 x 512 px, 1 arcsec/px, V band,
    30 s, every 2 min from 2026-11-24T03:00:00 UTC); the catalog is
    ``demo_apass.ecsv``. A ``manifest.json`` records the version: files from
    another version or frame count are rebuilt.
    """
    if n_frames < 2:
        raise ValueError("the demo needs at least 2 frames")
    directory.mkdir(parents=True, exist_ok=True)
    targets = _targets(n_frames)
    manifest_path = directory / "manifest.json"
    catalog_path = directory / "demo_apass.ecsv"
    frames = tuple(
        DemoFrame(
            index=i,
            path=directory / f"demo_{i + 1:03d}.fits",
            mid_time_utc=_START_UTC + timedelta(seconds=i * _CADENCE_S + _EXPTIME_S / 2),
            exptime_s=_EXPTIME_S,
            filter_name=_FILTER,
            telescope=_TELESCOPE,
        )
        for i in range(n_frames)
    )
    current = manifest_path.is_file() and (
        json.loads(manifest_path.read_text(encoding="utf-8")) == _manifest(n_frames)
    )
    if not current or not catalog_path.is_file() or not all(f.path.is_file() for f in frames):
        _write(directory, frames, targets, catalog_path)
        manifest_path.write_text(json.dumps(_manifest(n_frames)), encoding="utf-8")
    return DemoField(
        obs_id=OBS_ID,
        obs_name=OBS_NAME,
        frames=frames,
        targets=targets,
        catalog_path=catalog_path,
        centre_ra_deg=_CENTRE_RA_DEG,
        centre_dec_deg=_CENTRE_DEC_DEG,
        zeropoint_mag=_ZP_MAG,
        gain_e_per_adu=_GAIN,
        read_noise_e=_READ_NOISE,
    )


def _write(
    directory: Path,
    frames: tuple[DemoFrame, ...],
    targets: tuple[DemoTarget, ...],
    catalog_path: Path,
) -> None:
    """Generate the catalog and every frame (each file written via a temporary name)."""
    rng = np.random.default_rng(_SEED)
    catalog = _catalog(rng, targets)
    for frame in frames:
        i = frame.index
        frng = np.random.default_rng([_SEED, i])
        dx, dy = frng.uniform(-5.0, 5.0, 2)
        centre_ra, centre_dec = _offset(_CENTRE_RA_DEG, _CENTRE_DEC_DEG, float(dx), float(dy))
        synth = make_frame(
            _SHAPE,
            stars=_frame_stars(catalog, targets, i),
            sky_e=float(frng.uniform(250.0, 400.0)),
            read_noise_e=_READ_NOISE,
            gain_e_per_adu=_GAIN,
            fwhm_px=float(frng.uniform(3.0, 4.0)),
            exptime_s=_EXPTIME_S,
            zeropoint_mag=_ZP_MAG,
            saturation_adu=60000.0,
            center_ra_deg=centre_ra,
            center_dec_deg=centre_dec,
            pixscale_arcsec=_PIXSCALE_ARCSEC,
            date_obs=frame.mid_time_utc - timedelta(seconds=frame.exptime_s / 2),
            filter_name=frame.filter_name,
            telescope=frame.telescope,
            omit_keys=("GAIN", "RDNOISE"),
            extra_header={"OBJECT": "soapd demo field"},
            rng=frng,
        )
        tmp = frame.path.with_name(frame.path.name + ".tmp.fits")
        write_frame(tmp, synth.data_adu, synth.header)
        tmp.replace(frame.path)
    out = catalog.copy()
    del out.meta["v_true"]
    tmp_cat = catalog_path.with_name(catalog_path.name + ".tmp")
    out.write(tmp_cat, format="ascii.ecsv", overwrite=True)
    tmp_cat.replace(catalog_path)
    (directory / "truth.json").write_text(
        json.dumps(
            {
                "zeropoint_mag": _ZP_MAG,
                "v_true": catalog.meta["v_true"],
                "targets": {t.name: list(t.mags) for t in targets},
            },
            indent=1,
        ),
        encoding="utf-8",
    )


def load_into(fake: FakeSkynet, demo: DemoField, *, archived: bool = False) -> list[int]:
    """Publish ``demo``'s frames on ``fake`` as one observation; return the exposure ids.

    Exposures are ``completed`` until released (``fake.release_next()`` or
    ``fake.start_releasing(interval_s)``) unless ``archived``. Their records
    carry the gain and read noise the frame headers lack.
    """
    fake.add_observation(demo.obs_id, demo.obs_name)
    return [
        fake.add_exposure(
            demo.obs_id,
            frame.path.read_bytes(),
            center_time_utc=frame.mid_time_utc,
            exptime_s=frame.exptime_s,
            telescope=frame.telescope,
            filter_name=frame.filter_name,
            gain=demo.gain_e_per_adu,
            read_noise=demo.read_noise_e,
            exp_id=demo.obs_id * 100 + frame.index + 1,
            filename=frame.path.name,
            archived=archived,
        )
        for frame in demo.frames
    ]
