"""The configuration schema: frozen dataclasses, one per TOML section.

Defaults live only here. Each field carries its meaning and unit in a ``#:``
comment, and its constraints in the field metadata (``min``, ``max``,
``choices``); :mod:`soapd.config.load` reads TOML into these classes and
:mod:`soapd.config.secrets` reads the token; field helpers live in
:mod:`soapd.config.fields`. This package imports nothing from soapd but ``errors``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from soapd.config.fields import _FROZEN, _opt, to_dict
from soapd.config.notifiers import NotifierConfig
from soapd.config.retention import RetentionConfig
from soapd.config.stacking import CircularConfig, StacksConfig

__all__ = [
    "AlertsConfig", "CalibrationConfig", "CircularConfig", "Config", "ExtractionConfig",
    "FrameConfig", "LimitsConfig", "LoggingConfig", "NotifierConfig", "PathsConfig",
    "PhotometryConfig", "RetentionConfig", "ServiceConfig", "SkynetConfig", "StacksConfig",
    "TargetConfig", "WebConfig", "to_dict",
]  # fmt: skip


@dataclass(**_FROZEN)
class SkynetConfig:
    """How soapd talks to the Skynet API (v2)."""

    #: Base URL of the Skynet API, without a trailing slash.
    api_url: str = "https://api.skynet.unc.edu/2.0"
    #: File holding the API token (read only when neither $CREDENTIALS_DIRECTORY/skynet-token
    #: nor $SOAPD_SKYNET_TOKEN / $SKYNET_API_TOKEN is set). Never put the token itself here.
    token_file: Path | None = None
    #: Observation ids followed from start-up (more can be added with `soapd observations add`).
    observations: list[int] = _opt(list, factory=True)
    #: Telescope names whose every new archived exposure is followed (empty: none).
    telescopes: list[str] = _opt(list, factory=True)
    #: Seconds between two polls of the API.
    poll_interval_s: float = _opt(60.0, lo=5.0, hi=86400.0)
    #: Seconds to wait for a TCP connection.
    connect_timeout_s: float = _opt(10.0, lo=0.1, hi=600.0)
    #: Seconds to wait for each read (FITS downloads included).
    read_timeout_s: float = _opt(60.0, lo=0.1, hi=3600.0)
    #: Attempts per request on connection errors and HTTP 5xx (1 = no retry).
    max_attempts: int = _opt(5, lo=1, hi=20)
    #: First retry delay in seconds; it doubles on each attempt.
    backoff_s: float = _opt(1.0, lo=0.0, hi=600.0)
    #: Rows asked for per page when listing exposures.
    page_size: int = _opt(100, lo=1, hi=1000)
    #: Hours of each followed observation re-listed by the reconciliation sweep.
    reconcile_window_h: float = _opt(48.0, lo=0.0, hi=8760.0)
    #: Seconds between reconciliation sweeps.
    reconcile_interval_s: float = _opt(3600.0, lo=60.0, hi=604800.0)
    #: Seconds between polls after the API rejected the token (401/403).
    auth_retry_interval_s: float = _opt(900.0, lo=10.0, hi=86400.0)
    #: Downloads run at the same time, each on its own thread (the scheduler only records
    #: their results, so the inbox and processing go on meanwhile).
    download_threads: int = _opt(2, lo=1, hi=16)
    #: Seconds one download may take in all, retries included: a transfer drip-fed just
    #: under read_timeout_s is given up then (no try counted) and resumed later.
    download_deadline_s: float = _opt(600.0, lo=1.0, hi=86400.0)
    #: Seconds an exposure may keep coming back unusable (an HTML page with status 200, a
    #: truncated or non-FITS body, the deadline passed) while it is retried with backoff and
    #: no try is counted; after that each such failure counts a try.
    download_budget_s: float = _opt(3600.0, lo=0.0, hi=604800.0)
    #: Ask the archive for reduced frames (sent as `reducequiet=1`).
    reduced: bool = True
    #: Verify the API's TLS certificate (turn off only for a host whose certificate is
    #: known to be wrong).
    verify_tls: bool = True


@dataclass(**_FROZEN)
class PathsConfig:
    """Where soapd keeps its state, caches and incoming files."""

    #: Folder for the database, downloaded frames and field-wide source tables.
    state_dir: Path = Path("/var/lib/soapd")
    #: Folder for the catalog cache (safe to delete; it is rebuilt from VizieR).
    cache_dir: Path = Path("/var/cache/soapd")
    #: Folder watched for FITS files dropped in by hand (unset: no inbox).
    inbox_dir: Path | None = None
    #: What to do with an inbox file once registered: "copy" it into state_dir or "move" it.
    inbox_action: str = _opt("copy", choices=("copy", "move"))

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.state_dir / "soapd.db"

    @property
    def frames_dir(self) -> Path:
        """Where downloaded and registered frames are kept."""
        return self.state_dir / "frames"

    @property
    def tables_dir(self) -> Path:
        """Where each frame's field-wide source table (Parquet) is kept."""
        return self.state_dir / "tables"

    @property
    def catalog_cache_dir(self) -> Path:
        """Where reference-catalog tiles are cached."""
        return self.cache_dir / "catalogs"


@dataclass(**_FROZEN)
class ServiceConfig:
    """How the daemon runs: worker processes, job intervals, tries, stall detection."""

    #: Worker processes for pixel work (0: one per CPU core).
    workers: int = _opt(0, lo=0, hi=256)
    #: Tasks a worker process runs before it is replaced (bounds memory creep).
    max_tasks_per_child: int = _opt(50, lo=1, hi=100000)
    #: Attempts per frame (downloads, then processing) before it is marked failed.
    max_tries: int = _opt(3, lo=1, hi=100)
    #: Starts after which a frame soapd itself died processing (kill -9, out of memory) is given
    #: up, in case it kills soapd; rarely the frame's fault, so above max_tries (which counts
    #: worker deaths while soapd runs).
    max_crash_starts: int = _opt(6, lo=1, hi=1000)
    #: Seconds between two runs of the frame-processing and download jobs (they are also
    #: woken as soon as a frame arrives or a worker finishes).
    process_interval_s: float = _opt(10.0, lo=0.5, hi=3600.0)
    #: Seconds between two inbox drains (the watcher also wakes the drain on each new file).
    inbox_interval_s: float = _opt(5.0, lo=0.5, hi=3600.0)
    #: Seconds between two runs of the alert outbox sender.
    alerts_interval_s: float = _opt(30.0, lo=1.0, hi=86400.0)
    #: Seconds between two heartbeat log lines (backlog per state and counters).
    heartbeat_interval_s: float = _opt(300.0, lo=5.0, hi=86400.0)
    #: Seconds a job or a frame may run before soapd counts as hung; under systemd the
    #: watchdog pings then stop and systemd restarts soapd (keep it above the slowest frame).
    stall_timeout_s: float = _opt(900.0, lo=30.0, hi=86400.0)
    #: Where frames are processed: "process" (worker processes here) or "dask" (soapd[dask]).
    executor: str = _opt("process", choices=("process", "dask"))
    #: The dask.distributed scheduler's address ("tcp://host:8786") for executor = "dask".
    dask_scheduler: str = ""
    #: Send each frame's bytes to the dask workers (for workers that cannot read
    #: paths.state_dir); soapd then writes the field-wide tables itself.
    dask_send_frames: bool = False


@dataclass(**_FROZEN)
class FrameConfig:
    """How a FITS frame is read."""

    #: Index of the image HDU (-1: the first HDU that holds a 2-D image).
    hdu: int = _opt(-1, lo=-1, hi=1000)
    #: Saturation level in ADU used when the header has no SATURATE (0: estimate it from
    #: the histogram of the frame).
    saturation_adu: float = _opt(0.0, lo=0.0)
    #: Per-telescope saturation levels in ADU (TELESCOP value -> level), used before
    #: `saturation_adu`.
    saturation_by_telescope_adu: dict[str, float] = _opt(dict, factory=True)
    #: Fraction of the saturation level above which a pixel is treated as saturated
    #: (non-linearity margin).
    saturation_fraction: float = _opt(0.95, lo=0.1, hi=1.0)
    #: Gain in e-/ADU when neither the Skynet metadata nor the header has it.
    gain_e_per_adu: float = _opt(1.0, lo=1e-3, hi=1e3)
    #: Read noise in e- when neither the Skynet metadata nor the header has it.
    read_noise_e: float = _opt(10.0, lo=0.0, hi=1e3)
    #: Subtract the overscan (BIASSEC) and trim (TRIMSEC) when the header has them.
    overscan: bool = False
    #: Largest size in MB a frame's data may have once decompressed (.gz, .bz2, tile-compressed
    #: .fz): a larger frame is rejected with the reason, checked in a separate process.
    max_decompressed_mb: float = _opt(1024.0, lo=1.0, hi=1048576.0)


@dataclass(**_FROZEN)
class ExtractionConfig:
    """sep background and source extraction."""

    #: SExtractor's DETECT_THRESH: filtered pixels above this x the per-pixel RMS are detected.
    thresh_sigma: float = _opt(1.5, lo=0.1, hi=1000.0)
    #: Noise the threshold is measured against: "map" (sep's RMS map) or "global" (one RMS).
    noise: str = _opt("map", choices=("map", "global"))
    #: Minimum number of connected pixels above threshold.
    minarea_px: int = _opt(5, lo=1, hi=10000)
    #: Detection filter: "default" (SExtractor's 3x3 pyramid), "gauss" (filter_fwhm_px), "none".
    filter_kernel: str = _opt("default", choices=("default", "gauss", "none"))
    #: FWHM in px of the "gauss" filter kernel.
    filter_fwhm_px: float = _opt(3.0, lo=0.5, hi=50.0)
    #: Number of deblending thresholds.
    deblend_nthresh: int = _opt(32, lo=1, hi=256)
    #: Minimum contrast for deblending (1.0 turns deblending off).
    deblend_cont: float = _opt(0.005, lo=0.0, hi=1.0)
    #: Clean spurious detections near bright objects.
    clean: bool = True
    #: Cleaning efficiency.
    clean_param: float = _opt(1.0, lo=0.0, hi=10.0)
    #: Background mesh size in px.
    back_size_px: int = _opt(64, lo=4, hi=4096)
    #: Background median-filter size in meshes.
    back_filter_size: int = _opt(3, lo=1, hi=15)
    #: Correct sep's background (a mode) to the mean blank sky, its RMS to their scatter (off: sep).
    blank_sky_correction: bool = True
    #: sep pixel stack (doubled once when sep reports "internal pixel buffer full").
    pixstack: int = _opt(1_000_000, lo=10_000, hi=100_000_000)
    #: Minimum S/N of a star used to measure the FWHM (relaxed to 10 when too few pass).
    fwhm_min_snr: float = _opt(30.0, lo=3.0, hi=1e6)
    #: Smallest FWHM in px a star can have on this camera; anything sharper is a cosmic ray.
    min_star_fwhm_px: float = _opt(1.5, lo=0.3, hi=50.0)


@dataclass(**_FROZEN)
class PhotometryConfig:
    """Aperture photometry, forced photometry and the error model."""

    #: "fixed", "fwhm_scaled", "optimal" (from the curve of growth) or "multi".
    aperture_mode: str = _opt("fwhm_scaled", choices=("fixed", "fwhm_scaled", "optimal", "multi"))
    #: Radius in px for the "fixed" mode.
    fixed_radius_px: float = _opt(5.0, lo=0.5, hi=500.0)
    #: Radius in FWHMs for the "fwhm_scaled" mode (1.25 = skynetsoap's 2.5 on the diameter).
    fwhm_factor: float = _opt(1.25, lo=0.2, hi=20.0)
    #: Smallest radius in px any mode may use.
    min_radius_px: float = _opt(2.0, lo=0.5, hi=500.0)
    #: Largest radius in px any mode may use.
    max_radius_px: float = _opt(15.0, lo=0.5, hi=500.0)
    #: Radius step in px of the curve of growth.
    radius_step_px: float = _opt(0.5, lo=0.1, hi=50.0)
    #: Radii in px of the "multi" mode.
    radii_px: list[float] = _opt(lambda: [3.0, 5.0, 7.0], factory=True)
    #: "multi" mode: keep a row per radius (true) or only the best-S/N radius per source.
    keep_all: bool = True
    #: Measure the sky in a local annulus around each source, not from the background map alone.
    local_sky: bool = False
    #: Inner radius of the sky annulus in px.
    annulus_inner_px: float = _opt(15.0, lo=1.0, hi=1000.0)
    #: Outer radius of the sky annulus in px.
    annulus_outer_px: float = _opt(25.0, lo=1.0, hi=1000.0)
    #: Correct every aperture to total flux with the curve of growth of bright isolated stars.
    aperture_correction: bool = True
    #: Scale the sky part of flux errors by the blank-sky over white-noise aperture scatter (>= 1).
    correlated_noise: bool = True
    #: Distance from the edge in px below which a row is flagged NEAR_EDGE.
    edge_margin_px: float = _opt(5.0, lo=0.0, hi=1000.0)
    #: Forced photometry: a row is a detection when S/N >= this value, else an upper limit.
    forced_snr_threshold: float = _opt(3.0, lo=0.0, hi=1000.0)
    #: Forced photometry: re-centre on the nearest peak within `recenter_radius_px`.
    recenter: bool = False
    #: Largest shift in px allowed when re-centring.
    recenter_radius_px: float = _opt(2.0, lo=0.1, hi=50.0)
    #: Sub-pixel sampling of aperture edges (sep's `subpix`; 0 = exact overlap).
    subpix: int = _opt(0, lo=0, hi=20)
    #: FWHM in px used when too few stars measure it (4 px: the 5 px radius of fwhm_factor 1.25).
    fallback_fwhm_px: float = _opt(4.0, lo=0.5, hi=100.0)
    #: Flag CONTAMINATED when neighbours' light in the aperture exceeds this many flux errors.
    contamination_max_sigma: float = _opt(0.5, lo=0.0, hi=1000.0)


@dataclass(**_FROZEN)
class LimitsConfig:
    """Limiting magnitudes."""

    #: Significance of the limiting magnitude in sigma.
    n_sigma: float = _opt(5.0, lo=1.0, hi=100.0)
    #: Which method fills `limiting_mag`: "robust" (blank-sky apertures) or "analytic".
    method: str = _opt("robust", choices=("robust", "analytic"))
    #: Blank-sky apertures drawn per frame and radius.
    n_samples: int = _opt(1000, lo=20, hi=100000)
    #: Growth in px of each source's 3-sigma ellipse in the blank-sky mask (also used for the
    #: background's blank-sky correction).
    mask_dilate_px: int = _opt(5, lo=0, hi=100)
    #: Border in px left out of blank-sky sampling.
    edge_buffer_px: int = _opt(25, lo=0, hi=10000)
    #: Scatter estimator of the blank-sky sums: "mad" (1.4826 x MAD) or "std".
    sigma_estimator: str = _opt("mad", choices=("mad", "std"))
    #: Seed of the blank-sky sampler (fixed so that results repeat).
    random_seed: int = _opt(0, lo=0)


@dataclass(**_FROZEN)
class CalibrationConfig:
    """Reference catalogs and the zero-point fit."""

    #: Fit a zero point against reference catalogs.
    enabled: bool = True
    #: Catalogs tried in order per band (band -> catalog names); other bands: the built-in chain.
    chains: dict[str, list[str]] = _opt(dict, factory=True)
    #: Band used to calibrate unfiltered frames (Open, Clear, Lum): "G" (Gaia) or "r".
    unfiltered_band: str = _opt("r", choices=("G", "r", "V", "R"))
    #: Local catalog files (ECSV, VOTable or FITS in VizieR column naming) used before VizieR.
    catalog_files: list[Path] = _opt(list, factory=True)
    #: Query VizieR when the cache and local files cannot serve a field.
    online: bool = True
    #: VizieR mirror URL (e.g. "vizier.cds.unistra.fr"); empty: astroquery's default.
    vizier_server: str = ""
    #: Seconds before a VizieR query is abandoned.
    timeout_s: float = _opt(30.0, lo=1.0, hi=3600.0)
    #: Largest number of rows asked from VizieR per query.
    row_limit: int = _opt(5000, lo=10, hi=1_000_000)
    #: Days a cached catalog tile stays valid (0: forever).
    cache_ttl_days: float = _opt(0.0, lo=0.0)
    #: Cross-match radius in arcsec.
    match_radius_arcsec: float = _opt(2.0, lo=0.1, hi=60.0)
    #: A calibrator needs no other catalog star or detection within this radius in arcsec.
    isolation_arcsec: float = _opt(8.0, lo=0.0, hi=600.0)
    #: Brightest catalog magnitude used (saturation guard).
    mag_min: float = _opt(10.0, lo=-5.0, hi=30.0)
    #: Faintest catalog magnitude used.
    mag_max: float = _opt(18.0, lo=-5.0, hi=30.0)
    #: Fewest stars needed for a zero point.
    min_stars: int = _opt(3, lo=1, hi=10000)
    #: Clipping threshold in units of the robust scatter.
    sigma_clip: float = _opt(3.0, lo=1.0, hi=100.0)
    #: Clipping iterations at most.
    max_iter: int = _opt(10, lo=1, hi=100)
    #: A zero point with a larger error (mag) is rejected: the frame stays uncalibrated.
    max_zp_err_mag: float = _opt(0.2, lo=0.001, hi=10.0)
    #: Systematic floor in mag added in quadrature to the zero-point error.
    zp_floor_mag: float = _opt(0.01, lo=0.0, hi=1.0)
    #: Fit a colour term together with the zero point.
    color_term: bool = False
    #: Convert Vega-system results to AB when writing them.
    convert_to_ab: bool = False
    #: Side in degrees of the sky tiles the catalog cache stores (one VizieR query each).
    tile_deg: float = _opt(0.5, lo=0.05, hi=10.0)
    #: Faintest magnitude (in each catalog's sort band) asked from VizieR (0: no limit).
    query_mag_limit: float = _opt(20.0, lo=0.0, hi=30.0)
    #: Seconds VizieR is left alone after a failed query (timeouts, outages) before retrying.
    retry_after_s: float = _opt(300.0, lo=0.0, hi=86400.0)
    #: Error in mag assumed for catalog magnitudes with no (or a flagged, u_e_) error.
    missing_err_mag: float = _opt(0.05, lo=0.0, hi=1.0)
    #: Magnitudes a neighbour may be fainter than a calibrator and still spoil its isolation.
    isolation_dmag: float = _opt(3.0, lo=0.0, hi=20.0)
    #: Skip calibrators the catalog marks as variable (Gaia VarFlag, RefCat2 dupvar).
    reject_variables: bool = True


@dataclass(**_FROZEN)
class AlertsConfig:
    """Alert rules (defaults for every target) and the outbox."""

    #: Raise alerts at all.
    enabled: bool = True
    #: New detection: S/N at least this after only limits or nothing.
    detection_snr: float = _opt(5.0, lo=1.0, hi=1000.0)
    #: Deeper limit: a limit deeper than the best so far by at least this many mag.
    deeper_limit_margin_mag: float = _opt(0.5, lo=0.0, hi=20.0)
    #: Deeper stacked limit: a stacked epoch's limit deeper than every single-frame and other
    #: stacked limit of the band so far by at least this many mag (once per epoch).
    stack_deeper_limit_margin_mag: float = _opt(0.5, lo=0.0, hi=20.0)
    #: Brightening/fading: a change of at least this many mag ...
    change_min_mag: float = _opt(0.3, lo=0.0, hi=20.0)
    #: ... at this significance in sigma, against the previous detection in the same band.
    change_min_sigma: float = _opt(3.0, lo=0.0, hi=1000.0)
    #: Alerts for one target and observation arriving within this many seconds go out as one.
    batch_window_s: float = _opt(120.0, lo=0.0, hi=86400.0)
    #: Delivery attempts before an alert is given up.
    max_attempts: int = _opt(10, lo=1, hi=1000)
    #: First retry delay in seconds; it doubles on each attempt.
    backoff_s: float = _opt(30.0, lo=0.0, hi=86400.0)


@dataclass(**_FROZEN)
class LoggingConfig:
    """Logging."""

    #: Root level: DEBUG, INFO, WARNING or ERROR.
    level: str = _opt("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    #: "auto" (plain under systemd, timestamped on a terminal), "journal" or "plain".
    style: str = _opt("auto", choices=("auto", "journal", "plain"))


@dataclass(**_FROZEN)
class WebConfig:
    """The read-only web page and JSON endpoints (``soapd web``)."""

    #: Address `soapd web` listens on. Anything but a loopback address (127.0.0.1, ::1,
    #: localhost) requires an access token.
    host: str = "127.0.0.1"
    #: TCP port `soapd web` listens on.
    port: int = _opt(8788, lo=1, hi=65535)
    #: Access token checked on every request (empty: none). Prefer token_file, $SOAPD_WEB_TOKEN
    #: or the systemd credential `web-token`, which are read first; never printed or logged.
    token: str = _opt("", secret=True)
    #: File holding the access token (read when neither $CREDENTIALS_DIRECTORY/web-token nor
    #: $SOAPD_WEB_TOKEN is set).
    token_file: Path | None = None
    #: Seconds between two automatic refreshes of the status and targets pages.
    refresh_s: float = _opt(10.0, lo=1.0, hi=3600.0)
    #: Rows of the points table shown on a target's page (all of them are in the downloads).
    table_rows: int = _opt(500, lo=10, hi=1_000_000)


@dataclass(**_FROZEN)
class TargetConfig:
    """One watched target (``[[targets]]``), upserted by name at start-up."""

    #: Unique name, e.g. "GRB 261124A" (printable characters only, at most 200).
    name: str = ""
    #: Right ascension in degrees (ICRS).
    ra_deg: float = _opt(0.0, lo=0.0, hi=360.0)
    #: Declination in degrees (ICRS).
    dec_deg: float = _opt(0.0, lo=-90.0, hi=90.0)
    #: Trigger time, ISO-8601 UTC (empty: none); lightcurves then show time since trigger.
    trigger_time: str = ""
    #: Per-target overrides of the [alerts] rule parameters (e.g. {change_min_mag = 0.5}).
    rules: dict[str, float] = _opt(dict, factory=True)


@dataclass(**_FROZEN)
class Config:
    """The whole configuration."""

    skynet: SkynetConfig = _opt(SkynetConfig, factory=True)
    paths: PathsConfig = _opt(PathsConfig, factory=True)
    service: ServiceConfig = _opt(ServiceConfig, factory=True)
    frame: FrameConfig = _opt(FrameConfig, factory=True)
    extraction: ExtractionConfig = _opt(ExtractionConfig, factory=True)
    photometry: PhotometryConfig = _opt(PhotometryConfig, factory=True)
    limits: LimitsConfig = _opt(LimitsConfig, factory=True)
    calibration: CalibrationConfig = _opt(CalibrationConfig, factory=True)
    alerts: AlertsConfig = _opt(AlertsConfig, factory=True)
    stacks: StacksConfig = _opt(StacksConfig, factory=True)
    circular: CircularConfig = _opt(CircularConfig, factory=True)
    retention: RetentionConfig = _opt(RetentionConfig, factory=True)
    notifiers: list[NotifierConfig] = _opt(list, factory=True)
    logging: LoggingConfig = _opt(LoggingConfig, factory=True)
    web: WebConfig = _opt(WebConfig, factory=True)
    targets: list[TargetConfig] = _opt(list, factory=True)
    #: The file this config was read from (None for the built-in defaults).
    source: Path | None = None

    def fingerprint(self) -> str:
        """Return the SHA-256 (hex) of the science-relevant sections, for provenance."""
        science = {k: to_dict(getattr(self, k)) for k in _SCIENCE_SECTIONS}
        for section, key in _NOT_SCIENCE:
            science[section].pop(key)
        blob = json.dumps(science, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def replace(self, **changes: Any) -> Self:
        """Return a copy with whole sections replaced (``cfg.replace(photometry=...)``)."""
        return dataclasses.replace(self, **changes)


_SCIENCE_SECTIONS = ("frame", "extraction", "photometry", "limits", "calibration")
#: Keys of those sections that cannot change a result (left out of the fingerprint).
_NOT_SCIENCE = (("frame", "max_decompressed_mb"),)
