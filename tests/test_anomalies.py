"""Anomaly detection on synthetic audit records (constructed directly, no store involved)."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from gateway.audit.anomalies import Anomaly, find_anomalies, render_anomalies
from gateway.audit.model import AuditRecord, Decision

DAY = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
_seq = itertools.count(1)


def record(
    officer: str,
    *,
    subject: str | None = None,
    purpose: str | None = "TOEZICHT_VW",
    organisation: str = "NVIK",
    at: datetime = DAY,
    decision: Decision = Decision.GIVEN,
    reason: str = "rule-1",
    trace: str | None = None,
) -> AuditRecord:
    """One audit record; subject-level when ``subject`` is set, request-level otherwise."""
    n = next(_seq)
    return AuditRecord(
        seq=n,
        trace_id=trace or f"{n:032x}",
        span_id=f"{n:016x}",
        parent_span_id=None,
        start_time=at,
        end_time=at + timedelta(milliseconds=20),
        status="OK" if decision is Decision.GIVEN else "ERROR",
        processing_activity_id=None,
        data_subject_id=subject,
        data_subject_id_type="vnummer" if subject else None,
        organisation_oin="00000001234567890000",
        organisation=organisation,
        officer=officer,
        authenticated_as=officer,
        roles=("analist",),
        purpose=purpose,
        legal_basis=None,
        coordinate="Vreemdeling.naam" if subject else "Query",
        path="vreemdeling.naam" if subject else "",
        decision=decision,
        reason=reason,
        registry="BVV" if subject else None,
        policy_version="v1",
        recorded_at=at,
        prev_hash="0" * 64,
        hash="0" * 64,
    )


def lookups(officer: str, persons: int, *, start: int = 0, **kw: Any) -> list[AuditRecord]:
    """``persons`` distinct subjects, two fields each (breadth counts persons, not fields)."""
    out = []
    for i in range(start, start + persons):
        for _ in range(2):
            out.append(record(officer, subject=f"{i:064x}", **kw))
    return out


def refusal(officer: str, reason: str, **kw: Any) -> AuditRecord:
    return record(officer, decision=Decision.REFUSED, reason=reason, **kw)


def test_broad_officer_among_targeted_peers_is_flagged() -> None:
    recs = lookups("sweeper", 60)
    for peer, n in (("p1", 5), ("p2", 8), ("p3", 12)):
        recs += lookups(peer, n)
    found = find_anomalies(recs)
    assert found == [
        Anomaly(
            officer="sweeper",
            organisation="NVIK",
            purpose="TOEZICHT_VW",
            day=date(2025, 3, 14),
            kind="breadth",
            value=60,
            baseline=8.0,
            detail=found[0].detail,
        )
    ]
    assert "median of 3 peer(s) 8" in found[0].detail


def test_breadth_thresholds_are_inclusive_and_both_needed() -> None:
    # 24 = 3 × median 8 and >= 20: flagged. 23 is not.
    peers = lookups("p1", 8) + lookups("p2", 8)
    assert [a.value for a in find_anomalies([*lookups("x", 24), *peers])] == [24]
    assert find_anomalies([*lookups("x", 23), *peers]) == []
    # Far above quiet peers but under min_breadth: not flagged.
    assert find_anomalies([*lookups("x", 19), *lookups("p", 1)]) == []


def test_refused_lookups_count_towards_breadth() -> None:
    recs = [
        record("x", subject=f"{i:064x}", decision=Decision.REFUSED, reason="SUBJECT_OUT_OF_SCOPE")
        for i in range(30)
    ]
    recs += lookups("p", 2)
    assert [a.value for a in find_anomalies(recs)] == [30]


def test_without_peers_the_reference_is_factor_times_min_breadth() -> None:
    assert find_anomalies(lookups("alone", 59)) == []
    found = find_anomalies(lookups("alone", 60))
    assert [(a.value, a.baseline) for a in found] == [(60, 20.0)]
    assert "no peers" in found[0].detail


def test_peers_are_per_purpose_and_per_utc_day() -> None:
    # Same officer count on another purpose or another day is not a peer.
    recs = lookups("x", 40)
    recs += lookups("busy", 40, purpose="OVERLAST")
    recs += lookups("busy", 40, at=DAY + timedelta(days=1))
    recs += lookups("quiet", 2)
    found = find_anomalies(recs)
    # x has one peer (quiet, 2) -> flagged; busy has no peer on either slot and 40 < 60.
    assert [(a.officer, a.purpose, a.day) for a in found] == [
        ("x", "TOEZICHT_VW", date(2025, 3, 14))
    ]


def test_day_is_the_utc_day_of_start_time() -> None:
    late = datetime(2025, 3, 14, 23, 30, tzinfo=UTC)
    recs = lookups("x", 30, at=late) + lookups("x", 30, start=30, at=late + timedelta(hours=1))
    # 30 persons on each UTC day: neither day reaches 60 without peers.
    assert find_anomalies(recs) == []
    # Same 60 persons within one day are flagged.
    assert len(find_anomalies(lookups("x", 60, at=late))) == 1


def test_officers_of_different_organisations_are_different_people() -> None:
    recs = lookups("j.devries", 40, organisation="NVIK")
    recs += lookups("j.devries", 40, start=40, organisation="KMAR")
    assert find_anomalies(recs) == []  # two officers of 40 each, each the other's peer


def test_request_level_only_officer_is_a_peer_with_breadth_zero() -> None:
    recs = [*lookups("x", 25), refusal("p", "PURPOSE_NOT_GRANTED")]
    found = find_anomalies(recs)
    assert [(a.officer, a.baseline) for a in found] == [("x", 0.0)]


def test_repeated_cap_refusals_are_flagged() -> None:
    recs = [
        refusal("prober", "TOO_MANY_SUBJECTS", at=DAY),
        refusal("prober", "QUOTA_EXCEEDED", at=DAY + timedelta(hours=1), purpose="OVERLAST"),
        refusal("prober", "TOO_MANY_SUBJECTS", at=DAY + timedelta(days=1)),
        refusal("prober", "TOO_MANY_SUBJECTS", at=DAY + timedelta(days=2)),
        refusal("careful", "TOO_MANY_SUBJECTS"),
        refusal("careful", "QUOTA_EXCEEDED"),
        # Other refusals and field-level refusals do not count.
        refusal("careful", "PURPOSE_NOT_GRANTED"),
        record("careful", subject="a" * 64, decision=Decision.REFUSED, reason="QUOTA_EXCEEDED"),
    ]
    found = find_anomalies(recs)
    assert len(found) == 1
    a = found[0]
    assert (a.officer, a.kind, a.value, a.baseline) == ("prober", "caps", 4, 3.0)
    assert a.day == date(2025, 3, 15)  # the third refusal
    assert a.purpose == "OVERLAST,TOEZICHT_VW"
    assert "QUOTA_EXCEEDED×1, TOO_MANY_SUBJECTS×3" in a.detail


def test_one_request_counts_once() -> None:
    recs = [refusal("x", "TOO_MANY_SUBJECTS", trace="f" * 32) for _ in range(3)]
    recs = [dataclasses.replace(r, span_id="1" * 16) for r in recs]
    assert find_anomalies(recs) == []
    assert len(find_anomalies(recs, repeat_refusals=1)) == 1


def test_arguments_are_validated() -> None:
    with pytest.raises(ValueError, match="breadth_factor"):
        find_anomalies([], breadth_factor=0)
    with pytest.raises(ValueError, match="min_breadth"):
        find_anomalies([], min_breadth=0)
    with pytest.raises(ValueError, match="repeat_refusals"):
        find_anomalies([], repeat_refusals=0)


def test_accepts_any_iterable_once() -> None:
    recs = lookups("alone", 70)
    assert len(find_anomalies(iter(recs))) == 1


def test_render_is_an_aligned_table_and_escapes_control_characters() -> None:
    recs = lookups("sweeper", 60) + lookups("p", 2)
    recs += [refusal("evil\x1b[2J\nfake row", "QUOTA_EXCEEDED") for _ in range(3)]
    text = render_anomalies(find_anomalies(recs))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["DAY", "KIND", "ORGANISATION", "OFFICER"]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 4  # header, rule, two anomalies: the newline did not add a row
    assert "\x1b" not in text
    assert "\\x1b[2J\\nfake row" in text
    assert "sweeper" in text
    assert lines[0].index("VALUE") < lines[0].index("BASELINE")
    assert render_anomalies([]) == "No anomalies found.\n"


def test_an_application_acting_for_officers_is_counted_per_officer_it_names() -> None:
    """The anomaly report tells who acted: the asserted officer with the application that named
    it, so the same officer name under two applications is two actors, never one."""
    recs = [dataclasses.replace(r, authenticated_as="app-1") for r in lookups("officier-a", 60)]
    recs += lookups("officier-a", 2)  # a personal token of the same name
    recs += lookups("p1", 5) + lookups("p2", 8)
    (found,) = find_anomalies(recs)
    assert found.officer == "officier-a (via app-1)" and found.value == 60
