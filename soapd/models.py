"""Shared frozen records passed between soapd's layers.

Only plain values live here: no I/O, no SQL, no pixels. Times are timezone-aware
UTC ``datetime`` objects; angles are degrees (ICRS); exposure times are seconds.
The columns of the tables these records carry are described in :mod:`soapd.columns`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from astropy.table import Table

__all__ = [
    "FRAME_STATES",
    "AlertDraft",
    "ExposureMeta",
    "FrameResult",
    "FrameRow",
    "FrameSummary",
    "StackRecord",
    "Target",
]

#: The states of a frame in the ledger, in lifecycle order:
#: ``seen -> downloaded -> processing -> processed | rejected | failed``.
#: The schema's CHECK constraint was written with these values (migration m001);
#: changing this tuple needs a new migration.
FRAME_STATES: tuple[str, ...] = (
    "seen",
    "downloaded",
    "processing",
    "processed",
    "rejected",
    "failed",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A watched sky position.

    ``rules`` holds per-target overrides of the alert-rule parameters of
    :class:`soapd.config.AlertsConfig` (field name -> value).
    """

    name: str
    ra_deg: float
    dec_deg: float
    trigger_time_utc: datetime | None = None
    active: bool = True
    rules: dict[str, float] = field(default_factory=dict)
    target_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExposureMeta:
    """What the archive (Skynet's JSON) knows about one exposure.

    Any field may be None when unknown; the frame loader prefers these values
    over the FITS header only where the header lacks them (gain, read noise,
    filter, telescope) and always for the canonical mid-exposure time when the
    header has none. ``from_user`` marks values a person gave on purpose
    (``soapd process --exptime/--gain/--read-noise/--filter``): those win over the
    header, for headers that are wrong rather than silent (a filter wheel code).
    """

    exp_id: int | None = None
    obs_id: int | None = None
    telescope: str | None = None
    filter: str | None = None
    exptime_s: float | None = None
    mid_time_utc: datetime | None = None
    gain_e_per_adu: float | None = None
    read_noise_e: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    from_user: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertDraft:
    """An alert raised by a rule, not yet stored (see :mod:`soapd.alerts.rules`).

    ``dedupe_key`` is unique in the store: saving the same draft twice (for example
    when a frame is processed again) stores and sends it once. ``batch_key`` groups
    alerts of one target from one observation into one message. ``payload`` holds
    JSON-serialisable values only (magnitudes in mag, times ISO-8601 UTC).
    """

    target_name: str
    rule: str
    dedupe_key: str
    batch_key: str
    message: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRow:
    """One row of the frame ledger (``frames`` table), as the daemon and the API need it.

    ``state`` is one of :data:`FRAME_STATES`; ``seen_at``/``updated_at`` are ISO-8601
    UTC text. ``meta`` is the frame's metadata: the archive's (or the caller's) until
    the frame is processed, then what processing established (telescope, filter,
    exposure time, mid-exposure time), plus the archive's gain, read noise and extras.
    """

    frame_id: int
    source: str
    exp_id: int | None
    obs_id: int | None
    path: Path | None
    sha256: str | None
    size_bytes: int | None
    state: str
    tries: int
    last_error: str | None
    seen_at: str
    updated_at: str
    meta: ExposureMeta


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameSummary:
    """Frame-level results: one row of the ledger's ``frames`` table.

    The zero point is per second of exposure in electrons:
    ``m = -2.5 log10(F_e / t_s) + zp``. When the frame has no zero point
    (``zp_mag`` NaN; ``cal_reason`` says why, e.g. a fit rejected by
    ``calibration.max_zp_err_mag``) the limits ``lim_mag``/``lim_mag_robust`` are NaN
    too, and so are the table's calibrated magnitudes; instrumental magnitudes are in
    the table's ``ins_mag`` and the instrumental limits in ``lim_ins_mag`` /
    ``lim_ins_mag_robust`` (and the table's ``limiting_ins_mag``).

    ``fwhm_px`` is measured on ``n_fwhm_stars`` stars of the stellar locus
    (``fwhm_source`` "stars"), or is ``photometry.fallback_fwhm_px`` when too few
    stars qualified (``fwhm_source`` "configured", ``n_fwhm_stars`` 0).

    ``footprint_deg`` holds the sky corners (RA, Dec in degrees) of the pixel grid, in
    order; ``covered_footprint_deg`` those of the part where a position can be
    measured (inside the edge buffer). Both are empty for a frame without WCS.
    """

    image_file: str
    telescope: str
    filter_raw: str
    band: str
    exptime_s: float
    mid_time_utc: datetime
    gain_e_per_adu: float
    read_noise_e: float
    saturation_adu: float
    fwhm_px: float
    n_fwhm_stars: int
    n_sources: int
    aperture_radii_px: tuple[float, ...]
    zp_mag: float
    zp_err_mag: float
    zp_scatter_mag: float
    n_cal_stars: int
    cal_catalog: str | None
    cal_mag_system: str
    lim_mag: float
    lim_mag_robust: float
    sky_rms_e: float
    has_wcs: bool
    center_ra_deg: float
    center_dec_deg: float
    flags: int
    notes: tuple[str, ...] = ()
    #: "stars" (measured) or "configured" (photometry.fallback_fwhm_px).
    fwhm_source: str = "stars"
    #: Why the frame has no zero point ("" when it has one).
    cal_reason: str = ""
    #: Analytic and robust n-sigma limits on the instrumental scale (mag, -2.5 log10 e-/s).
    lim_ins_mag: float = float("nan")
    lim_ins_mag_robust: float = float("nan")
    footprint_deg: tuple[tuple[float, float], ...] = ()
    covered_footprint_deg: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameResult:
    """A processed frame: its summary, its full source table and its stage timings.

    ``table`` has the columns of :data:`soapd.columns.RESULT_COLUMNS`.
    """

    summary: FrameSummary
    table: Table
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StackRecord:
    """One stacked measurement of a target: an epoch's frames co-added (see :mod:`soapd.stacks`).

    An epoch is one telescope, band and time bin (``epoch_key``); ``members`` are the
    frames co-added, with their normalised ``weights`` (``mid_time_utc`` is the same
    weighted mean of their mid-exposure times, ``mean_mid_time_utc`` the plain mean);
    ``considered`` every frame of the epoch looked at (members and ``excluded``, each
    with its reason). Magnitudes are calibrated (``mag_system``), ``lim_mag`` is
    ``lim_nsigma``-sigma; ``zp_err_mag`` is the statistical and ``zp_scatter_mag`` the
    systematic calibration uncertainty. The store keeps every ``version`` of an epoch,
    the older ones ``superseded``.
    """

    target_name: str
    epoch_key: str
    telescope: str
    band: str
    bin_start_utc: datetime
    bin_end_utc: datetime
    mid_time_utc: datetime
    mean_mid_time_utc: datetime
    start_utc: datetime
    stop_utc: datetime
    exptime_s: float
    total_exptime_s: float
    members: tuple[int, ...]
    weights: tuple[float, ...]
    considered: tuple[int, ...]
    excluded: tuple[tuple[int, str], ...] = ()
    mag: float = float("nan")
    mag_err: float = float("nan")
    lim_mag: float = float("nan")
    lim_nsigma: float = 5.0
    snr: float = float("nan")
    flux_e: float = float("nan")
    flux_err_e: float = float("nan")
    flux_ujy: float = float("nan")
    flux_ujy_err: float = float("nan")
    is_detection: bool = False
    flags: int = 0
    zp_mag: float = float("nan")
    zp_err_mag: float = float("nan")
    zp_scatter_mag: float = float("nan")
    n_cal_stars: int = 0
    cal_catalog: str = ""
    mag_system: str = "none"
    predicted_lim_mag: float = float("nan")
    single_detections: int = 0
    best_single_lim_mag: float = float("nan")
    fwhm_px: float = float("nan")
    aperture_px: float = float("nan")
    alignment: str = ""
    config_hash: str = ""
    stack_id: int | None = None
    version: int = 0
    superseded: bool = False

    @property
    def n_frames(self) -> int:
        """Number of frames co-added."""
        return len(self.members)
