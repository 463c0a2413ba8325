"""An audit's stored files, and everything built from them for a download.

Both the workers (which write an audit's images and result tables) and the web pages (which
serve them) use this package; it imports the ORM models but neither ``worker`` nor the views.

- :mod:`exports.files`: :class:`~exports.files.AuditFiles`, the one place that names an audit's
  files in the storage (``audits/<pk>/images/...``, ``audits/<pk>/results/...``), the file-name
  slugs, and writing, reading (:func:`~exports.files.open_stream`, in chunks, also from an
  S3-compatible object store), listing, measuring and deleting them through Django's storage
  API.
- :mod:`exports.comparison_store`: the comparisons table as Parquet in the storage (written by
  the aggregation stage, read by the pages and the export).
- :mod:`exports.dataset`: the dataset export, :func:`~exports.dataset.export_to_dir` (a folder,
  ``run_audit --out``) and :func:`~exports.dataset.stream_zip` (the download); its README names
  every file. Built from one :class:`~exports.plan.ExportPlan` (:mod:`exports.plan`: which image
  goes where, and the export's image and identity numbers) by :mod:`exports.manifest` (manifest,
  identities), :mod:`exports.tables` (comparisons, pair lists, summary, result tables) and
  :mod:`exports.dataset_card`.
- :mod:`exports.export_cache`: the export's large members, deflated once when an audit finishes.
- :mod:`exports.zip_stream`: :class:`~exports.zip_stream.ExportFile` and zips streamed piece by
  piece (the dataset zip and the tables zip), with every member path checked.
"""
