"""Alerts: rules on each new lightcurve point, the outbox sender, notifiers and GCN drafts.

``history.draft_alerts`` runs the rules of ``rules`` on a processed frame's
target rows against their stored history (``soapd.frames.record_result`` stores
the drafts with the frame in one transaction); ``outbox.flush`` delivers them
later through the notifiers of ``notifiers.build_notifiers``; ``gcn`` writes
circular drafts. Nothing here writes to the store except the outbox's delivery
bookkeeping.
"""
