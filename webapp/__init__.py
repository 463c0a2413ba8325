"""The FaceAudit web application: Django project (settings, URLs) and the ``audits`` app.

The web process never imports torch or onnxruntime: it validates configs, stores rows, enqueues
work by task name and serves stored results.
"""
