"""One request from headers to a recorded answer, and what the caller receives."""
