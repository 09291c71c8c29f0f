"""Alerts: rules on each new lightcurve point, the outbox sender, notifiers and GCN drafts.

``record.record_result`` evaluates the rules and stores a processed frame with
its alerts in one transaction; ``outbox.flush`` delivers them later through the
notifiers of ``notifiers.build_notifiers``; ``gcn`` writes circular drafts.
"""
