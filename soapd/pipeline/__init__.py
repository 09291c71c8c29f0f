"""The science pipeline: pure stages from a FITS file to a :class:`FrameResult`.

:data:`STAGES` is the chain, a tuple of ``(name, callable)``; each callable takes
the :class:`~soapd.pipeline.context.Context` and returns a new one. :func:`run_frame`
threads the context through the chain, times each stage and prefixes errors with
the stage name. :func:`process_frame` is the public entry point (the one-shot
``soapd process``, the daemon's workers and the benchmark all call it).

Where things live: stage ``name`` is ``stage_<name>`` in module ``<name>.py``
(``load``, ``quality``, ``background``, ``detect``, ``skymask``, ``fwhm``,
``morphology``, ``apertures``, ``forced``, ``photometry``, ``limits``, ``calibrate``,
``table``).
Helpers they share: ``context.py`` (the Context and its records), ``frame.py``
(FITS reading), ``apcorr.py`` (curve of growth), ``crossmatch.py`` and
``zeropoint.py`` (calibration), ``sep_wrapper.py`` (every call into sep; its C
errors become :class:`~soapd.errors.ExtractionError` there and only there).

Outcomes: :class:`~soapd.errors.FrameUnreadable` / :class:`~soapd.errors.FrameRejected`
mean the frame cannot be measured (retrying will not help); any other
:class:`~soapd.errors.SoapdError` may be retried; any other exception is a bug and
propagates as itself, with the stage named in an exception note. A frame without
WCS is *not* rejected: the field photometry runs, and each requested target gets a
row flagged ``NO_WCS | OFF_FRAME`` with no flux, plus a note in the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from soapd.config import Config
from soapd.errors import SoapdError
from soapd.models import ExposureMeta, FrameResult, Target
from soapd.pipeline.apertures import stage_apertures
from soapd.pipeline.background import stage_background
from soapd.pipeline.calibrate import ReferenceProvider, stage_calibrate
from soapd.pipeline.context import Context
from soapd.pipeline.detect import stage_detect
from soapd.pipeline.forced import stage_forced
from soapd.pipeline.fwhm import stage_fwhm
from soapd.pipeline.limits import stage_limits
from soapd.pipeline.load import stage_load
from soapd.pipeline.morphology import stage_morphology
from soapd.pipeline.photometry import stage_photometry
from soapd.pipeline.quality import stage_quality
from soapd.pipeline.skymask import stage_skymask
from soapd.pipeline.table import stage_table

__all__ = ["STAGES", "Stage", "process_frame", "run_frame"]

Stage = tuple[str, Callable[[Context], Context]]


#: The stage chain, in order.
STAGES: tuple[Stage, ...] = (
    ("load", stage_load),
    ("quality", stage_quality),
    ("background", stage_background),
    ("detect", stage_detect),
    ("skymask", stage_skymask),
    ("fwhm", stage_fwhm),
    ("morphology", stage_morphology),
    ("apertures", stage_apertures),
    ("forced", stage_forced),
    ("photometry", stage_photometry),
    ("limits", stage_limits),
    ("calibrate", stage_calibrate),
    ("table", stage_table),
)


def run_frame(ctx: Context, stages: Sequence[Stage] = STAGES) -> tuple[Context, dict[str, float]]:
    """Thread ``ctx`` through ``stages``; return the final context and seconds per stage.

    A :class:`SoapdError` raised by a stage is re-raised as the same class with the
    stage name prefixed (``"detect: sep.extract failed: ..."``); other
    exceptions get the stage name as an exception note and propagate unchanged.
    """
    timings: dict[str, float] = {}
    for name, stage in stages:
        start = time.perf_counter()
        try:
            ctx = stage(ctx)
        except SoapdError as exc:
            raise type(exc)(f"{name}: {exc}") from exc
        except Exception as exc:
            exc.add_note(f"in pipeline stage {name!r} of {ctx.path}")
            raise
        finally:
            timings[name] = time.perf_counter() - start
    return ctx, timings


def process_frame(
    path: str | Path,
    *,
    targets: Sequence[Target] = (),
    zeropoint: float | None = None,
    config: Config,
    meta: ExposureMeta | None = None,
    catalogs: ReferenceProvider | None = None,
) -> FrameResult:
    """Measure one FITS frame and return its summary, source table and stage timings.

    Parameters
    ----------
    path
        The FITS file (plain, ``.gz``, ``.bz2`` or tile-compressed ``.fz``).
    targets
        Sky positions for forced photometry (one row per target per radius).
    zeropoint
        Zero point (mag, per second of exposure in electrons) to apply; when None,
        a catalog fit is tried if ``catalogs`` is given, calibration is enabled and
        the frame has a WCS; otherwise magnitudes stay instrumental (NO_CALIBRATION).
    config
        The whole configuration ([frame], [extraction], [photometry], [limits],
        [calibration] are used).
    meta
        What the archive knows about the exposure (fallbacks for the header).
    catalogs
        Reference-star provider for the zero-point fit.

    Raises
    ------
    FrameUnreadable, FrameRejected
        The frame cannot be measured; retrying will not help.
    SoapdError
        Any other failure (extraction, catalogs), with the stage name prefixed.
    """
    ctx = Context(
        path=Path(path),
        config=config,
        targets=tuple(targets),
        zeropoint=zeropoint,
        meta=meta,
        catalogs=catalogs,
    )
    ctx, timings = run_frame(ctx)
    result = ctx.result
    if result is None:  # pragma: no cover - the last stage always sets it
        raise RuntimeError("pipeline finished without a result")
    return FrameResult(summary=result.summary, table=result.table, timings_s=timings)
