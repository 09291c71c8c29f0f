"""skynetsoap's arguments of ``Soap(...)`` and ``Soap.run(...)``, and its silent cases made loud.

Plain functions used by :mod:`soapd.api.soap`: the backends skynetsoap let
users plug in (:func:`check_backends`), ``run(images=...)``
(:func:`split_positions`, :func:`select_images`), ``run(convert_vega_to_ab=)``
(:func:`run_config`), and the warnings for an observation the archive does not
know or that has no frames here.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from soapd.api.compat import UnknownObservationWarning
from soapd.errors import SkynetError, SkynetNotFound

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord

    from soapd.config import Config
    from soapd.models import FrameRow
    from soapd.pipeline.calibrate import ReferenceProvider
    from soapd.skynet.source import ExposureSource

__all__ = [
    "check_backends",
    "run_config",
    "select_images",
    "split_positions",
    "warn_no_frames",
    "warn_unknown_observation",
]


@runtime_checkable
class _ObservationLookup(Protocol):
    def get_observation(self, obs_id: int) -> Any: ...


def check_backends(calibrator: Any, solver: Any) -> ReferenceProvider | None:
    """Return skynetsoap's ``calibrator`` as soapd's catalog provider; refuse what soapd cannot use.

    soapd fits zero points itself over a reference-catalog provider (an object
    with ``stars(...)``, as ``Soap(catalogs=...)``); skynetsoap's calibrators
    (``calibrate_image``) and astrometry solvers have no place in its pipeline.
    """
    if solver is not None:
        raise TypeError(
            "Soap(solver=...) is not supported: soapd measures frames with the archive's WCS "
            "and reports frames without one (skynetsoap's astrometry backends do not apply)"
        )
    if calibrator is None:
        return None
    if callable(getattr(calibrator, "stars", None)):
        provider: ReferenceProvider = calibrator
        return provider
    raise TypeError(
        "Soap(calibrator=...) takes a soapd reference-catalog provider (an object with "
        "stars(), e.g. soapd.catalogs.CatalogService); skynetsoap calibrators "
        "(calibrate_image) are not supported: soapd fits the zero point itself"
    )


def split_positions(
    positions: Sequence[SkyCoord] | SkyCoord | None, images: Sequence[str | Path] | None
) -> tuple[Sequence[SkyCoord] | SkyCoord | None, Sequence[str | Path] | None]:
    """Return (forced positions, images): a first argument of paths is skynetsoap's ``images``."""
    if (
        images is None
        and isinstance(positions, Sequence)
        and not isinstance(positions, str)
        and positions
        and all(isinstance(p, str | Path) for p in positions)
    ):
        return None, [Path(str(p)) for p in positions]
    return positions, images


def select_images(frames: list[FrameRow], images: Sequence[str | Path] | None) -> list[FrameRow]:
    """Return the frames stored at one of ``images`` (all frames when None); warn about the rest."""
    if images is None:
        return frames
    wanted = {Path(p).expanduser().resolve() for p in images}
    chosen = [f for f in frames if f.path is not None and f.path.resolve() in wanted]
    unknown = wanted - {f.path.resolve() for f in chosen if f.path is not None}
    if unknown:
        warnings.warn(
            f"{len(unknown)} image(s) are not frames of this observation and were not measured "
            f"(e.g. {min(unknown)}); measure other files with `soapd process FILE`",
            UserWarning,
            stacklevel=4,
        )
    return chosen


def run_config(config: Config, convert_vega_to_ab: bool | None) -> Config:
    """Return ``config`` with ``calibration.convert_to_ab`` set for one run (None: unchanged)."""
    if convert_vega_to_ab is None or convert_vega_to_ab == config.calibration.convert_to_ab:
        return config
    calibration = dataclasses.replace(config.calibration, convert_to_ab=bool(convert_vega_to_ab))
    return config.replace(calibration=calibration)


def warn_unknown_observation(client: ExposureSource, obs_id: int) -> None:
    """Warn that the archive listed no exposure of ``obs_id``: unknown, or nothing archived yet."""
    why = "has no archived exposures (yet)"
    if isinstance(client, _ObservationLookup):
        try:
            client.get_observation(obs_id)
        except SkynetNotFound:
            why = "is unknown to the archive: check the observation id"
        except SkynetError:
            pass
    warnings.warn(
        f"observation {obs_id} {why}; nothing to download",
        UnknownObservationWarning,
        stacklevel=4,
    )


def warn_no_frames(obs_id: int, state_dir: Path, *, downloaded: bool) -> None:
    """Warn that ``run()`` found no frame of ``obs_id`` in the ledger."""
    hint = (
        "" if downloaded else " (nothing was downloaded: set $SKYNET_API_TOKEN or call download())"
    )
    warnings.warn(
        f"observation {obs_id} has no frames in {state_dir}{hint}; the result is empty",
        UnknownObservationWarning,
        stacklevel=4,
    )
