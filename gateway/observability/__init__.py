"""Observability: traces with LDV attributes, and the keyed pseudonyms of data subjects."""
