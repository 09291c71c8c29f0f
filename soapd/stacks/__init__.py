"""Stacked epochs: deeper limits from co-adding the frames of one telescope and filter.

For each watched target, processed frames are grouped into epochs
(:mod:`.epochs`: log-spaced bins after a trigger, fixed bins otherwise); in each
epoch only frames that deepen the limit are kept (:mod:`.select`); cutouts around
the target (:mod:`.cutouts`, cached by :mod:`.cache`) are background-subtracted and
aligned on the WCS (:mod:`.align`), scaled to a common zero point and co-added with
inverse-variance weights (:mod:`.combine`), and the co-add is measured by the
single-frame pipeline (:mod:`.measure`). :func:`build_stack` (:mod:`.build`) does
all of it for one epoch; :mod:`.plan` decides which epochs of a stored target are
out of date and stores what the daemon's workers build; :mod:`.table` gives the
stacked lightcurve as a table.
"""

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from soapd.stacks.align import Aligned, align
    from soapd.stacks.build import CutoutLoader, build_stack, file_loader, stack_calibration
    from soapd.stacks.cache import CutoutCache, cached_loader
    from soapd.stacks.combine import CoAdd, coadd, scale_factor
    from soapd.stacks.cutouts import Cutout, cut_frame, load_cutout, subtract_background
    from soapd.stacks.epochs import Epoch, EpochBin, epoch_bin, group_epochs
    from soapd.stacks.measure import measure_stack, stack_frame
    from soapd.stacks.records import Candidate, StackResult, candidate_from_result
    from soapd.stacks.select import Selection, predicted_limit, select_frames

__all__ = [
    "Aligned",
    "Candidate",
    "CoAdd",
    "Cutout",
    "CutoutCache",
    "CutoutLoader",
    "Epoch",
    "EpochBin",
    "Selection",
    "StackResult",
    "align",
    "build_stack",
    "cached_loader",
    "candidate_from_result",
    "coadd",
    "cut_frame",
    "epoch_bin",
    "file_loader",
    "group_epochs",
    "load_cutout",
    "measure_stack",
    "predicted_limit",
    "scale_factor",
    "select_frames",
    "stack_calibration",
    "stack_frame",
    "subtract_background",
]

#: Public name -> the submodule defining it. Imported on first use (PEP 562), so that
#: ``soapd.stacks.epochs`` or ``.table`` alone does not load the pixel code (scipy,
#: astropy.wcs, the pipeline): ``soapd lightcurve`` and ``soapd prune`` start faster.
_LAZY: dict[str, str] = {
    "Aligned": "soapd.stacks.align",
    "Candidate": "soapd.stacks.records",
    "CoAdd": "soapd.stacks.combine",
    "Cutout": "soapd.stacks.cutouts",
    "CutoutCache": "soapd.stacks.cache",
    "CutoutLoader": "soapd.stacks.build",
    "Epoch": "soapd.stacks.epochs",
    "EpochBin": "soapd.stacks.epochs",
    "Selection": "soapd.stacks.select",
    "StackResult": "soapd.stacks.records",
    "align": "soapd.stacks.align",
    "build_stack": "soapd.stacks.build",
    "cached_loader": "soapd.stacks.cache",
    "candidate_from_result": "soapd.stacks.records",
    "coadd": "soapd.stacks.combine",
    "cut_frame": "soapd.stacks.cutouts",
    "epoch_bin": "soapd.stacks.epochs",
    "file_loader": "soapd.stacks.build",
    "group_epochs": "soapd.stacks.epochs",
    "load_cutout": "soapd.stacks.cutouts",
    "measure_stack": "soapd.stacks.measure",
    "predicted_limit": "soapd.stacks.select",
    "scale_factor": "soapd.stacks.combine",
    "select_frames": "soapd.stacks.select",
    "stack_calibration": "soapd.stacks.build",
    "stack_frame": "soapd.stacks.measure",
    "subtract_background": "soapd.stacks.cutouts",
}


def __getattr__(name: str) -> Any:
    """Import the submodule behind a public name on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'soapd.stacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names, lazy ones included."""
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """Module type of the package: a public name that is also a submodule stays the function.

    Importing ``soapd.stacks.align`` makes the import system set the package attribute
    ``align`` to the submodule; the public name ``align`` is that module's function (as
    it was when this package imported every submodule eagerly), so it is kept.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _LAZY.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
