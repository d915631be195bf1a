"""Proportionality: daily quotas per officer and purpose, and suppression of small statistics."""
