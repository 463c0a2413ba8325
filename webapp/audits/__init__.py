"""The ``audits`` app: audits, their synthetic identities, images, scores and results.

Rows in :mod:`~webapp.audits.models`; creating an audit in :mod:`~webapp.audits.launch`
(``create_audit``, the one place); who may see it in :mod:`~webapp.audits.access`; what the
installation offers in :mod:`~webapp.audits.availability`. Pages: :mod:`~webapp.audits.views`
(form, dashboard, pairs), :mod:`~webapp.audits.downloads`, :mod:`~webapp.audits.compare_views`,
:mod:`~webapp.audits.report` and the JSON :mod:`~webapp.audits.api`; they read a stored result
through :class:`audit.summary.AuditSummary`. Figures are drawn in :mod:`~webapp.audits.charts`
and listed once in :mod:`~webapp.audits.dashboard` (a new chart: its figure function, one
``Chart`` entry and its section in ``_dashboard.html``).
"""
