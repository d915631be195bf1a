"""Benchmarks: the cost of accountability, measured side by side (``python -m bench``).

Three variants over one schema and one in-memory population, in one process and one run:

* ``bare`` — Strawberry with parse and validation caches; no authorization, no recording.
* ``naive`` — ``permission_classes`` on every field plus Strawberry's OpenTelemetry extension.
* ``ketenpoort`` — the gateway's own path after authentication (plan, overlay, audit batch,
  per-subject spans), over a warm cache and an in-memory audit store.

The harness reports medians and ratios. It never asserts a time: targets are printed and
written to the results, met or missed, for a human to judge.
"""
