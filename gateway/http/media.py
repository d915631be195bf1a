"""Media types of GraphQL over HTTP: what a caller accepts, and what it sent.

Content negotiation follows the GraphQL-over-HTTP specification: a caller that names
``application/graphql-response+json`` gets it; a caller that sends no ``Accept`` or accepts
anything (``*/*``, ``application/*``) gets the legacy ``application/json``; ``text/html`` is
offered only where the caller of a GET may be a browser (the development explorer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
HTML = "text/html"


@dataclass(frozen=True, slots=True)
class MediaRange:
    """One entry of an ``Accept`` header: ``type/subtype`` (either may be ``*``) and its q."""

    type: str
    subtype: str
    q: float

    def specificity(self, media_type: str) -> int:
        """-1 if this range does not match ``media_type``; else 0 (*/*), 1 (type/*), 2 (exact)."""
        kind, _, sub = media_type.partition("/")
        if self.type == "*":
            return 0 if self.subtype == "*" else -1
        if self.type != kind:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == sub else -1


def parse_accept(header: str) -> list[MediaRange]:
    """The media ranges of an ``Accept`` header; malformed entries are left out."""
    ranges: list[MediaRange] = []
    for entry in header.split(","):
        kind, *params = (part.strip() for part in entry.split(";"))
        main, slash, sub = kind.lower().partition("/")
        if not slash or not main or not sub:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            ranges.append(MediaRange(main, sub, q))
    return ranges


def negotiate(accept: str | None, offered: Sequence[str]) -> str | None:
    """The offered media type the caller prefers, or None when it accepts none of them.

    Each offered type takes the q of the most specific range that matches it. Highest q wins;
    then an exact match beats a wildcard; on a tie among exact matches the earlier offer wins
    (offer ``application/graphql-response+json`` first), on a tie among wildcards
    ``application/json`` wins (the specification's legacy default). No ``Accept`` header at all
    means ``application/json``.
    """
    if accept is None or not accept.strip():
        return JSON if JSON in offered else None
    ranges = parse_accept(accept)
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for order, media_type in enumerate(offered):
        matches = [(r.specificity(media_type), r.q) for r in ranges]
        matches = [m for m in matches if m[0] >= 0]
        if not matches:
            continue
        specificity, q = max(matches)
        if q <= 0:
            continue
        # Among wildcard matches the legacy type goes first; among exact ones, the offer order.
        tie = order if specificity == 2 else (0 if media_type == JSON else 1 + order)
        rank = (q, specificity, -tie)
        if best is None or rank > best:
            best, chosen = rank, media_type
    return chosen


@dataclass(frozen=True, slots=True)
class ContentType:
    """A request's ``Content-Type``: the media type (lower case) and its charset, if named."""

    media_type: str
    charset: str | None

    @classmethod
    def parse(cls, header: str | None) -> ContentType | None:
        if header is None or not header.strip():
            return None
        kind, *params = (part.strip() for part in header.split(";"))
        charset = None
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                charset = value.strip().strip('"').lower()
        return cls(kind.lower(), charset)

    @property
    def is_json_utf8(self) -> bool:
        """``application/json`` in UTF-8 (the only request body GraphQL over HTTP requires)."""
        return self.media_type == JSON and self.charset in (None, "utf-8", "utf8")
