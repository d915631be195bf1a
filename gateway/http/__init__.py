"""The HTTP surface: the ASGI app behind ``POST /graphql``, ``/healthz`` and ``/readyz``."""
