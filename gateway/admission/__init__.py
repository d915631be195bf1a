"""Admission: who is asking (the bearer token) and for which purpose and processing activity."""
