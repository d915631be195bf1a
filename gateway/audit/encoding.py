"""The trail's canonical encodings (layout ``KP2``) and its content-addressed decision sets.

The encoding rules, the decision set encoding and ``subjects_hash`` are described in
:mod:`gateway.audit.chain` (the layout); this module holds the byte-level pieces every part of
the trail shares: :func:`enc` (one value), :func:`dec_values` (their inverse), :func:`ts`
(timestamps), and :class:`DecisionSets`, the per-process memo that encodes each decision tuple
once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from gateway.audit.model import Decision, FieldDecision

#: Prefixes of the encodings, so a later encoding can coexist with this one.
ENTRY_TAG = b"KP2E|"
SUBJECTS_TAG = b"KP2S|"
SET_TAG = b"KP2D|"

# One ``hashlib`` attribute look-up per call site costs more than the small hashes themselves.
_sha256 = hashlib.sha256


def ts(value: datetime) -> str:
    """The canonical text of a timestamp: UTC, microseconds. Refuses naive datetimes.

    Used for hashing and as the stored form in SQLite, where its fixed width makes text order
    equal time order, so range searches work on the text.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} in audit data; use UTC-aware times")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def enc(value: str | None) -> bytes:
    """One value's canonical bytes: ``~`` for ``None``, else ``<utf-8 length>:<bytes>``."""
    if value is None:
        return b"~"
    raw = value.encode("utf-8")
    return b"%d:%b" % (len(raw), raw)


def enc_all(values: Iterable[str | None]) -> bytes:
    """The canonical bytes of several values, in order."""
    return b"".join(enc(v) for v in values)


# ---- decision sets ------------------------------------------------------------------------


def encode_decisions(decisions: Sequence[FieldDecision]) -> bytes:
    """The canonical encoding of a decision tuple (what a decision set's id hashes)."""
    parts = [SET_TAG, enc(str(len(decisions)))]
    for d in decisions:
        parts.append(
            enc(d.coordinate)
            + enc(d.path)
            + enc(Decision(d.decision).value)
            + enc(d.reason)
            + enc(d.registry)
        )
    return b"".join(parts)


def decision_set_id(encoding: bytes) -> str:
    """A decision set's id: the SHA-256 hex digest of its encoding."""
    return _sha256(encoding).hexdigest()


def dec_values(data: bytes, start: int) -> tuple[list[str | None], int]:
    """Decode netstring values from ``start`` to the end of ``data``."""
    out: list[str | None] = []
    i, end = start, len(data)
    while i < end:
        if data[i] == 0x7E:  # "~"
            out.append(None)
            i += 1
            continue
        colon = data.index(b":", i)
        digits = data[i:colon]
        if not digits.isdigit() or (len(digits) > 1 and digits[0] == 0x30):
            raise ValueError(f"bad length at byte {i}")
        stop = colon + 1 + int(digits)
        if stop > end:
            raise ValueError(f"value at byte {i} runs past the end")
        out.append(data[colon + 1 : stop].decode("utf-8"))
        i = stop
    return out, i


def decode_decisions(encoding: bytes) -> tuple[FieldDecision, ...]:
    """The decision tuple of an encoding; ``ValueError`` unless it is one exactly."""
    data = bytes(encoding)
    if not data.startswith(SET_TAG):
        raise ValueError("not a KP2 decision set encoding")
    values, _ = dec_values(data, len(SET_TAG))
    if not values or values[0] is None or not values[0].isdigit():
        raise ValueError("decision set encoding has no count")
    count = int(values[0])
    items = values[1:]
    if len(items) != 5 * count:
        raise ValueError(f"decision set says {count} decisions but holds {len(items) / 5:g}")
    decisions: list[FieldDecision] = []
    for k in range(count):
        coordinate, path, decision, reason, registry = items[5 * k : 5 * k + 5]
        if coordinate is None or path is None or decision is None or reason is None:
            raise ValueError(f"decision {k} of the set has a missing value")
        decisions.append(FieldDecision(coordinate, path, Decision(decision), reason, registry))
    result = tuple(decisions)
    if encode_decisions(result) != data:
        raise ValueError("decision set encoding is not canonical")
    return result


class DecisionSets:
    """In-process memo of decision sets: tuple → (id, encoding) and id → decoded tuple.

    The plan hands the same tuple object to every person of a root field and to every request
    with the same document and grant, so the common hit is by object identity (the cache keeps
    the object alive, and checks it is the same one, so a recycled ``id()`` cannot alias).
    Equal tuples that are other objects (and request-level decision lists, which are built per
    request) hit by content. Bounded: when a map is full it starts again.
    """

    __slots__ = ("_bound", "_by_content", "_by_identity", "_decoded", "encoded")

    def __init__(self, bound: int = 2048) -> None:
        self._bound = bound
        self._by_identity: dict[int, tuple[tuple[FieldDecision, ...], str, bytes]] = {}
        self._by_content: dict[tuple[FieldDecision, ...], tuple[str, bytes]] = {}
        self._decoded: dict[str, tuple[FieldDecision, ...]] = {}
        #: How many decision tuples this process has encoded (and hashed) so far.
        self.encoded = 0

    def key(self, decisions: Sequence[FieldDecision]) -> tuple[str, bytes]:
        """The (id, encoding) of a decision tuple (or list), encoding it only when new."""
        if type(decisions) is tuple:
            hit = self._by_identity.get(id(decisions))
            if hit is not None and hit[0] is decisions:
                return hit[1], hit[2]
            content: tuple[FieldDecision, ...] = decisions
        else:
            content = tuple(decisions)
        found = self._by_content.get(content)
        if found is None:
            encoding = encode_decisions(content)
            found = (decision_set_id(encoding), encoding)
            self.encoded += 1
            if len(self._by_content) >= self._bound:
                self._by_content.clear()
            self._by_content[content] = found
            self.remember(found[0], content)
        if type(decisions) is tuple:
            if len(self._by_identity) >= self._bound:
                self._by_identity.clear()
            self._by_identity[id(decisions)] = (decisions, found[0], found[1])
        return found

    def decoded(self, set_id: str) -> tuple[FieldDecision, ...] | None:
        """The decisions of a set this process has encoded or read, if it still knows them."""
        return self._decoded.get(set_id)

    def remember(self, set_id: str, decisions: tuple[FieldDecision, ...]) -> None:
        """Keep the decoded decisions of a set (for expanding searches)."""
        if len(self._decoded) >= self._bound:
            self._decoded.clear()
        self._decoded[set_id] = decisions


def subjects_hash(rows: Iterable[tuple[str | None, str]]) -> str:
    """``subjects_hash`` of an entry from its (subject, decision set id) rows, in order."""
    digest = _sha256(SUBJECTS_TAG)
    for subject, set_id in rows:
        digest.update(enc(subject) + enc(set_id))
    return digest.hexdigest()
