"""proportionality."""
