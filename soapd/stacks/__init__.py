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
