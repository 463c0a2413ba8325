"""An audit's stored files, and everything built from them for a download.

Both the workers (which write an audit's images and result tables) and the web pages (which
serve them) use this package; it imports the ORM models but neither ``worker`` nor the views.

- :mod:`exports.files`: :class:`~exports.files.AuditFiles`, the one place that names an audit's
  files in the storage (``audits/<pk>/images/...``, ``audits/<pk>/results/...``), the file-name
  slugs, and writing, listing, measuring and deleting them through Django's storage API.
"""
