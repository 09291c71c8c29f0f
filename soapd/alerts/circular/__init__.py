"""GCN circulars from stacked epochs: text, one-click submission link, schema-valid JSON.

**Text** (Skynet's layout, GCN 9916 and 9989; GCN style rules in the team's
``reference/gcn.md``): the subject ``<event>: <team>/<telescopes> optical
<detection|upper limits|observations>`` starts with the canonical event name, so
GCN files the circular under the event; a short lead (trigger, telescopes,
filters, start after T0); "Stacking only images that increase the limiting
magnitude yields:"; the table, one row per stacked epoch: (weighted) mean
mid-exposure time since trigger (h), telescope, ``N x S``, filter, ``mag +/- err``
or ``> limit``, calibration stars and catalogue, 1-sigma systematic and statistical
calibration uncertainty, under five stacked heading lines whose last holds the
units; then the calibration sentence (catalogue, AB/Vega system, no extinction
correction). Plain ASCII, no tabs, at most ``max_lines`` lines (GCN asks for fewer
than 60). Rounding follows GCN 9916: limits to 0.1 mag, calibration uncertainties
to 0.001 mag, times to 0.1 h (finer in the first 6 min), detections to 0.01 mag.

**Event names** are checked with GCN's own subject patterns (``parseEventFromSubject``
and ``validSubjectKeywords`` of nasa-gcn/gcn.nasa.gov at commit 11d32bd4,
``app/routes/circulars/circulars.lib.ts``): a name that matches none would land in
"Misc"; depending on ``event_name_check`` the draft is refused or carries a warning.

**Link**: :func:`submission_url` is GCN's web form prefilled by URL
(``https://gcn.nasa.gov/circulars/new?subject=...&body=...&format=text/plain``); the
observer reviews and submits under their own account. soapd never submits.

**JSON**: :func:`sidecar` follows the GCN unified schema v7.2.1 (vendored in
``gcn_schema/``): the ``boom/alert`` envelope with one ``core/Photometry`` item per
row (a detection has ``mag``/``mag_error``; an upper limit only ``limiting_mag``),
observation start/stop/livetime and the trigger time; soapd's own numbers go in
each item's ``soapd`` object, the only place the schema admits extra keys.
:func:`validate_sidecar` checks a document with ``jsonschema``.
"""

from soapd.alerts.circular.draft import Draft, draft_for_target, draft_from_table, write_draft
from soapd.alerts.circular.names import (
    VALID_SUBJECT_KEYWORDS,
    canonical_event_name,
    subject_is_valid,
)
from soapd.alerts.circular.rows import CircularRow, rows_from_lightcurve
from soapd.alerts.circular.schema import BOOM_SCHEMA_ID, sidecar, validate_sidecar
from soapd.alerts.circular.text import (
    GCN_NEW_CIRCULAR_URL,
    MAX_URL_BYTES,
    Circular,
    compose,
    submission_url,
)

__all__ = [
    "BOOM_SCHEMA_ID",
    "GCN_NEW_CIRCULAR_URL",
    "MAX_URL_BYTES",
    "VALID_SUBJECT_KEYWORDS",
    "Circular",
    "CircularRow",
    "Draft",
    "canonical_event_name",
    "compose",
    "draft_for_target",
    "draft_from_table",
    "rows_from_lightcurve",
    "sidecar",
    "subject_is_valid",
    "submission_url",
    "validate_sidecar",
    "write_draft",
]
