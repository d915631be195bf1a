"""The accountability console: the trail in a browser, for security teams and the FG.

A separate ASGI app (``ketenpoort console``) that reads the audit store with the same settings as
``serve`` and never touches the registries. Every page view and export is itself recorded in the
trail (:mod:`gateway.audit.reading`).
"""
