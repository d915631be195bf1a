"""The composition root: builds a running gateway from its settings."""
