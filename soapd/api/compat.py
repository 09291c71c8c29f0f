"""skynetsoap's surface of :class:`~soapd.api.soap.Soap`: file layout, verbosity, plots, prompts.

skynetsoap scripts run unchanged on soapd (issue #14). This module holds what
only that surface needs:

* :func:`resolve_layout`: where a ``Soap`` puts frames, exports and debug
  figures. With its own state (no config file naming ``paths.state_dir``, no
  ``state_dir=``) it keeps skynetsoap's layout in the working folder:
  ``soap_images/<obs id>/r<exp id>.fits``, ``soap_results/<obs id>/`` and
  ``soap_debug/<obs id>/``. Pointed at a daemon's state it uses the daemon's
  frame folder, ``<state_dir>/results/<obs id>/`` and ``<state_dir>/debug/``.
* :func:`set_verbosity`: ``Soap(verbose=True)`` shows soapd's INFO messages.
* :class:`UnknownObservationWarning` and :class:`NotCoveredWarning`: what
  skynetsoap passed over in silence.
* :func:`ask`: skynetsoap's ``confirm=True`` prompt (only on a terminal).
* :class:`SoapCompat`: ``Soap.result``, ``Soap.plot`` and ``Soap.export``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from soapd.api.support import SAME_POSITION_ARCSEC
from soapd.columns import column_or, covered_mask

if TYPE_CHECKING:
    from soapd.api.results import PhotometryResult
    from soapd.config import Config
    from soapd.models import Target

__all__ = [
    "Layout",
    "NotCoveredWarning",
    "SoapCompat",
    "UnknownObservationWarning",
    "ask",
    "resolve_layout",
    "set_verbosity",
    "warn_not_covered",
]

logger = logging.getLogger(__name__)

#: The handler ``Soap(verbose=True)`` adds to the "soapd" logger (one at most).
_HANDLER_NAME = "soapd-verbose"


class UnknownObservationWarning(UserWarning):
    """The archive does not know the observation, or has no archived exposure of it."""


class NotCoveredWarning(UserWarning):
    """A forced position lies outside every frame measured: its rows carry no measurement."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one ``Soap`` writes: absolute folders for one observation."""

    #: Downloaded frames (``r<exp id>.fits``).
    image_dir: Path
    #: Exports and plots of :meth:`Soap.export` and :meth:`Soap.plot`.
    result_dir: Path
    #: Debug figures (``<frame stem>_debug.png``).
    debug_dir: Path
    #: True for skynetsoap's layout in the working folder.
    skynetsoap: bool


def resolve_layout(
    observation_id: int,
    config: Config,
    *,
    private: bool,
    image_dir: str | Path | None = None,
    result_dir: str | Path | None = None,
) -> Layout:
    """Return the folders of a ``Soap`` (see the module docstring); nothing is created.

    ``image_dir`` and ``result_dir`` are skynetsoap's roots: the observation id is
    appended, as skynetsoap does. A ``SOAPConfig``'s ``debug.debug_dir`` is the
    debug root.
    """
    obs = str(int(observation_id))
    debug_cfg = getattr(config, "debug", None)
    state = config.paths.state_dir
    if image_dir is not None:
        images = Path(image_dir) / obs
    else:
        images = Path("soap_images") / obs if private else config.paths.frames_dir
    if result_dir is not None:
        results = Path(result_dir) / obs
    else:
        results = Path("soap_results") / obs if private else state / "results" / obs
    if debug_cfg is not None:
        debug = Path(debug_cfg.debug_dir) / obs
    else:
        debug = Path("soap_debug") / obs if private else state / "debug"
    return Layout(
        image_dir=images.expanduser().resolve(),
        result_dir=results.expanduser().resolve(),
        debug_dir=debug.expanduser().resolve(),
        skynetsoap=private,
    )


def set_verbosity(verbose: bool | str) -> None:
    """Apply ``Soap(verbose=...)``: True shows soapd's INFO messages on stderr, a name sets a level.

    False changes nothing (warnings reach stderr through Python's default
    handler). When neither the "soapd" logger nor the root logger has a handler
    (a plain script), one stderr handler (``[LEVEL] name: message``) is added
    once to the "soapd" logger.
    """
    if verbose is False:
        return
    level = "INFO" if verbose is True else str(verbose).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"verbose must be True, False or a level name, got {verbose!r}")
    soapd_logger = logging.getLogger("soapd")
    soapd_logger.setLevel(level)
    if any(h.get_name() == _HANDLER_NAME for h in soapd_logger.handlers):
        return
    if soapd_logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(name)s: %(message)s"))
    soapd_logger.addHandler(handler)


def ask(question: str) -> bool:
    """Return True if the user answers "y" on the terminal; False (with a warning) without one.

    skynetsoap's ``confirm=True`` prompts with ``input()``; a script without a
    terminal (cron, CI, a notebook kernel without stdin) would fail there, so
    nothing is deleted instead and the warning says how to delete without asking.
    """
    if not (sys.stdin is not None and sys.stdin.isatty()):
        warnings.warn(
            f"{question} not asked (no terminal), so nothing was deleted; pass confirm=False "
            "to delete without asking",
            UserWarning,
            stacklevel=3,
        )
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def warn_not_covered(result: PhotometryResult, targets: list[Target]) -> None:
    """Warn (:class:`NotCoveredWarning`) of each forced position no frame of ``result`` covered.

    A position is matched to the forced rows within 0.05 arcsec of it (whatever
    their ``target_name``: a daemon's stored rows carry its target's name).
    """
    from astropy.coordinates import angular_separation

    table = result.table
    if not targets:
        return
    n_rows = len(table)
    forced = column_or(table, "is_forced", default=False).astype(bool) if n_rows else np.zeros(0)
    ra = np.radians(column_or(table, "ra", np.nan).astype(float)) if n_rows else np.zeros(0)
    dec = np.radians(column_or(table, "dec", np.nan).astype(float)) if n_rows else np.zeros(0)
    covered = covered_mask(table) if n_rows else np.zeros(0, bool)
    for target in targets:
        sep_arcsec = (
            np.degrees(
                angular_separation(ra, dec, np.radians(target.ra_deg), np.radians(target.dec_deg))
            )
            * 3600.0
        )
        mine = forced.astype(bool) & (sep_arcsec < SAME_POSITION_ARCSEC)
        if not np.any(mine & covered):
            warnings.warn(
                f"forced position {target.name} (RA {target.ra_deg:.5f}, Dec "
                f"{target.dec_deg:+.5f} deg) lies outside all {int(np.sum(mine))} frame(s) "
                "measured: its rows are marked not covered, with no magnitude and a NaN limit",
                NotCoveredWarning,
                stacklevel=3,
            )


class SoapCompat:
    """skynetsoap's ``result``, ``plot`` and ``export`` of ``Soap`` (which sets the attributes)."""

    observation_id: int
    layout: Layout
    _result: PhotometryResult | None

    @property
    def result(self) -> PhotometryResult:
        """The result of the last :meth:`Soap.run`; RuntimeError before the first run."""
        if self._result is None:
            raise RuntimeError("no results yet: call run() first")
        return self._result

    def plot(
        self,
        units: str = "calibrated_mag",
        path: str | Path | None = None,
        show: bool = False,
        **kwargs: Any,
    ) -> list[Path]:
        """Plot the lightcurve of each forced position in the last result; return the files.

        skynetsoap drew every row of a field-wide table in one figure (thousands of
        sources mixed); soapd draws one lightcurve per forced position of
        :meth:`run` found in :attr:`result` (frames that did not cover a position
        are left out). ``path``: the file for a single position (default
        ``<result_dir>/<units>_plot.png``); with several positions each gets
        ``<stem>_<n>`` added. ``show``: also ``plt.show()`` each figure.
        ``kwargs`` go to :meth:`PhotometryResult.plot` (``trigger_time_utc``,
        ``title``). Raise ValueError when the result has no forced position.
        """
        from astropy.coordinates import SkyCoord

        table = self.result.table
        forced: npt.NDArray[np.bool_] = column_or(table, "is_forced", default=False).astype(bool)
        names = sorted(
            set(column_or(table, "target_name", "").astype(str)[np.asarray(forced, bool)]) - {""}
        )
        if not names:
            raise ValueError(
                "plot() draws the lightcurves of forced positions and the last result has none: "
                "run(forced_positions=[coord]) first, or plot "
                "result.extract_target(coord).plot(path)"
            )
        base = Path(path) if path is not None else self.layout.result_dir / f"{units}_plot.png"
        out: list[Path] = []
        for i, name in enumerate(names):
            rows = table[(column_or(table, "target_name", "").astype(str) == name) & forced]
            coord = SkyCoord(float(rows["ra"][0]), float(rows["dec"][0]), unit="deg")
            lc = self.result.extract_target(coord, radius_arcsec=0.1, forced_photometry=True)
            if not np.any(covered_mask(lc.table)):
                continue  # NotCoveredWarning was given by run()
            file = base if len(names) == 1 else base.with_name(f"{base.stem}_{i + 1}{base.suffix}")
            file.parent.mkdir(parents=True, exist_ok=True)
            out.append(lc.plot(file, units, show=show, **kwargs))  # type: ignore[arg-type]
        return out

    def export(self, format: str = "csv", path: str | Path | None = None, **kwargs: Any) -> Path:  # noqa: A002 - skynetsoap's name
        """Write :attr:`result` as csv, ecsv, parquet, json or gcn; return the path.

        Default path: ``<result_dir>/photometry.<ext>`` (``.txt`` for gcn), as skynetsoap.
        """
        ext = {
            "csv": ".csv",
            "ecsv": ".ecsv",
            "parquet": ".parquet",
            "json": ".json",
            "gcn": ".txt",
        }
        if format not in ext:
            raise ValueError(f"unknown export format {format!r}; one of {', '.join(ext)}")
        out = (
            Path(path) if path is not None else self.layout.result_dir / f"photometry{ext[format]}"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = getattr(self.result, f"to_{format}")
        written = writer(out, **kwargs)
        return out if format == "gcn" else Path(written)
