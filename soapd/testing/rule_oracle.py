"""The history-based alert decision that soapd made before issue 11: a test oracle.

:func:`history_draft_alerts` reads each measured target's whole earlier lightcurve
(``Store.rule_history``) and runs :func:`soapd.alerts.rules.evaluate` on the new
point, as :func:`soapd.alerts.history.draft_alerts` did before the rules read the
incremental rule state. Tests and benches compare the two; soapd never calls this.
"""

from __future__ import annotations

import logging

from soapd.alerts.history import _drafts, _frame_points, reference_points
from soapd.alerts.rules import RuleParams, evaluate
from soapd.config import Config
from soapd.errors import ConfigError
from soapd.models import AlertDraft, FrameResult
from soapd.store import Store
from soapd.timeutil import mjd_of

__all__ = ["history_draft_alerts"]

logger = logging.getLogger(__name__)


def history_draft_alerts(
    store: Store, frame_id: int, result: FrameResult, *, config: Config
) -> list[AlertDraft]:
    """Return the alerts the target rows of ``result`` raise against the stored history."""
    if not config.alerts.enabled or "target_name" not in result.table.colnames:
        return []
    new = _frame_points(result, frame_id, mjd_of(result.summary.mid_time_utc))
    obs_id = store.frame_obs_id(frame_id)
    drafts: list[AlertDraft] = []
    for name, point in new.items():
        target = store.get_target(name)
        if target is None or not target.active:
            continue
        earlier = [
            p
            for p in reference_points(store.rule_history(name))
            if p.frame_id != frame_id and (p.mjd, p.frame_id) < (point.mjd, frame_id)
        ]
        try:
            params = RuleParams.from_config(config.alerts, target.rules)
        except ConfigError as exc:
            logger.error("target %r: %s; using the [alerts] defaults", name, exc)  # noqa: TRY400
            params = RuleParams.from_config(config.alerts)
        hits = evaluate(earlier, point, params)
        drafts += _drafts(name, hits, point, frame_id=frame_id, obs_id=obs_id, result=result)
    return drafts
