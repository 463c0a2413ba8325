"""The ``audits`` app: audits, their synthetic identities, images, scores and results."""
