"""Ketenpoort: a purpose-bound, fully accounted GraphQL gateway to the chain registries."""

__version__ = "0.1.0"
