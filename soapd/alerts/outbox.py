"""Drain the alerts outbox: batch, send to every notifier, retry with backoff.

The outbox lives in the store (alerts are written with the measurement that
raised them), so nothing is only in memory: a crash before sending means the
alert goes out after restart; a crash after sending to some notifiers means
only the others are tried again (deliveries are recorded per notifier).

Batching: due alerts sharing a ``batch_key`` (one target, one observation) go
out as one message, held until ``batch_window_s`` has passed since the oldest
of them was raised (retries are never held). A failing or slow notifier costs at
most its ``timeout_s`` per flush and never stops the others or the processing;
the failed alerts are retried after ``backoff_s * 2**(attempts-1)`` seconds,
and given up (status ``failed``, kept in the store) after ``max_attempts``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from soapd.alerts.circular import draft_for_target
from soapd.alerts.notifiers import AlertMessage, Notifier, build_notifiers
from soapd.config import AlertsConfig, CircularConfig
from soapd.errors import SoapdError
from soapd.timeutil import parse_utc

if TYPE_CHECKING:
    from soapd.store import Store
    from soapd.store.outbox import StoredAlert

__all__ = ["FlushStats", "build_message", "build_notifiers", "flush"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlushStats:
    """What one :func:`flush` did (counts of alerts, except ``messages`` and ``held_batches``)."""

    sent: int = 0
    retry_later: int = 0
    given_up: int = 0
    messages: int = 0
    held_batches: int = 0


def _parse(text: str) -> datetime:
    return parse_utc(text)


def build_message(
    store: Store, batch: Sequence[StoredAlert], *, circular: CircularConfig | None = None
) -> AlertMessage:
    """Return the message of one batch: alert lines, the target's circular draft, and JSON.

    The draft (:func:`soapd.alerts.circular.draft_for_target`: stacked epochs) comes
    with GCN's prefilled submission link; ``data`` carries the schema JSON (``gcn``),
    the link (``gcn_submission_url``) and the subject. soapd never submits it.
    """
    name = batch[0].target_name
    lines = [a.message for a in batch]
    data: dict[str, Any] = {
        "target": name,
        "alerts": [
            {"alert_id": a.alert_id, "rule": a.rule, "created_at": a.created_at, **a.payload}
            for a in batch
        ],
    }
    text = "\n".join(lines) + "\n"
    try:
        draft = draft_for_target(store, name, config=circular)
    except (SoapdError, ValueError, KeyError) as exc:
        logger.warning("alert for %s: no GCN draft attached: %s", name, exc)
        text += f"\nGCN circular draft: none ({exc}).\n"
    else:
        c = draft.circular
        text += (
            "\nGCN circular draft (review it, then submit it yourself with the link below):\n\n"
            f"{c.text}\nSubmit (opens GCN's form, prefilled): {c.url}\n"
        )
        text += "".join(f"Note: {w}\n" for w in c.warnings)
        data["gcn"] = draft.sidecar
        data["gcn_subject"] = c.subject
        data["gcn_submission_url"] = c.url
    rules = sorted({a.rule for a in batch})
    return AlertMessage(
        target_name=name,
        batch_key=batch[0].batch_key,
        alert_ids=tuple(a.alert_id for a in batch),
        subject=f"soapd: {name}: {', '.join(r.replace('_', ' ') for r in rules)}",
        text=text,
        data=data,
    )


def flush(
    store: Store,
    notifiers: Sequence[Notifier],
    *,
    config: AlertsConfig,
    now: datetime | None = None,
    circular: CircularConfig | None = None,
) -> FlushStats:
    """Send every due alert once to every notifier that has not yet delivered it.

    ``circular`` shapes the GCN draft each message carries (default: [circular] defaults).
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    due = store.unsent_alerts(now)
    batches: dict[str, list[StoredAlert]] = {}
    for alert in due:
        batches.setdefault(alert.batch_key, []).append(alert)
    sent = retry = given_up = messages = held = 0
    for batch in batches.values():
        oldest = min(_parse(a.created_at) for a in batch)
        fresh = all(a.attempts == 0 for a in batch)
        if fresh and now < oldest + timedelta(seconds=config.batch_window_s):
            held += 1
            continue
        message = build_message(store, batch, circular=circular)
        errors: dict[int, list[str]] = {a.alert_id: [] for a in batch}
        for notifier in notifiers:
            todo = [a for a in batch if notifier.key not in a.delivered_to]
            if not todo:
                continue
            try:
                notifier.send(message)
            except Exception as exc:
                logger.warning("notifier %s failed: %s", notifier.key, exc)
                for a in todo:
                    errors[a.alert_id].append(f"{notifier.key}: {exc}")
                continue
            messages += 1
            for a in todo:
                store.mark_alert_delivered(a.alert_id, notifier.key)
        for a in batch:
            if not errors[a.alert_id]:
                store.mark_alert_sent(a.alert_id)
                sent += 1
                continue
            attempts = a.attempts + 1
            if attempts >= config.max_attempts:
                store.mark_alert_failed(a.alert_id, "; ".join(errors[a.alert_id]), None)
                logger.error("alert %d given up after %d attempts", a.alert_id, attempts)
                given_up += 1
            else:
                delay = config.backoff_s * math.pow(2.0, attempts - 1)
                store.mark_alert_failed(
                    a.alert_id, "; ".join(errors[a.alert_id]), now + timedelta(seconds=delay)
                )
                retry += 1
    return FlushStats(
        sent=sent, retry_later=retry, given_up=given_up, messages=messages, held_batches=held
    )
