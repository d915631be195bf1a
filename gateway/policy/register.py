"""The processing register / DPIA annex, rendered from the policy (``ketenpoort policy render``).

The register is generated, never hand-written: what the FG reads is by construction what the
gateway enforces, including the legal safeguards (a field a rule lists but the purpose has no
art. 9/10 basis for is shown as refused, not as given). Output is deterministic for a given policy
file and schema, so it can be committed and diffed in review.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.policy.model import (
    AGGREGATES_ONLY,
    ART9_NO_BASIS,
    ART10_NO_BASIS,
    WILDCARD,
    Policy,
    Purpose,
    owner_type,
)

_SAFEGUARD_TEXT = {
    ART9_NO_BASIS: "bijzonder persoonsgegeven zonder grondslag (AVG art. 9)",
    ART10_NO_BASIS: "strafrechtelijk gegeven zonder grondslag (AVG art. 10)",
    AGGREGATES_ONLY: "geen aggregaat, doelbinding is alleen_aggregaten",
}

_STATUS_TEXT = {"actief": "actief", "opgeschort": "**opgeschort**", "verboden": "**verboden**"}


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _grouped(policy: Policy, coordinates: Iterable[str]) -> list[str]:
    """Bullet lines ``- **Type**: f1, f2`` in schema order (types by first appearance)."""
    wanted = set(coordinates)
    groups: dict[str, list[str]] = {}
    for coordinate in policy.coordinates:  # schema order, so output is stable
        if coordinate in wanted:
            groups.setdefault(owner_type(coordinate), []).append(coordinate.partition(".")[2])
    return [f"- **{type_}**: {', '.join(fields)}" for type_, fields in groups.items()]


def _basis(text: str | None) -> str:
    return text if text is not None else "geen — deze gegevens worden nooit verstrekt"


def _purpose_section(policy: Policy, purpose: Purpose) -> list[str]:
    lines = [f"## Doelbinding `{purpose.id}`", ""]
    status = _STATUS_TEXT[purpose.status]
    if purpose.status_reason:
        status += f" — {purpose.status_reason}"
    scope = purpose.rijbereik.describe() if purpose.rijbereik else "geen (alle betrokkenen)"
    activities = ", ".join(
        f"`{a}` <{policy.register_base}{a}>" for a in purpose.processing_activities
    )
    lines += [
        f"- **Omschrijving**: {' '.join(purpose.omschrijving.split())}",
        f"- **Grondslag**: {purpose.grondslag}",
        f"- **Bijzondere persoonsgegevens (AVG art. 9)**: {_basis(purpose.bijzondere_grondslag)}",
        f"- **Strafrechtelijke gegevens (AVG art. 10)**: "
        f"{_basis(purpose.strafrechtelijke_grondslag)}",
        f"- **Status**: {status}",
        f"- **Rijbereik**: {scope}",
        f"- **Maximum personen per verzoek**: {purpose.max_subjects}",
        f"- **Quotum per medewerker per dag**: {purpose.quota_per_day}",
    ]
    if purpose.aggregates_only:
        lines.append(
            f"- **Alleen aggregaten**: ja; cellen met minder dan {purpose.min_cell} personen "
            "worden onderdrukt"
        )
    lines += [
        f"- **Bewaartermijn verantwoordingslog**: {purpose.retention_days} dagen",
        f"- **Verwerkingsactiviteiten**: {activities}",
        "",
    ]

    # One block per (organisation, set of roles with identical effective grants).
    pairs: list[tuple[str, str]] = []
    for rule in policy.rules:
        if rule.effect == "toestaan" and rule.purpose == purpose.id:
            for role in rule.roles:
                if (rule.organisation, role) not in pairs:
                    pairs.append((rule.organisation, role))
    lines += ["### Autorisaties", ""]
    if not pairs:
        lines += ["Geen organisatie of rol heeft deze doelbinding.", ""]
    if pairs and not purpose.active:
        lines += [
            f"Zolang de status {purpose.status} is, wordt niets verstrekt. "
            "Hieronder staat de set die na herstel zou gelden.",
            "",
        ]
    blocks: dict[tuple[str, frozenset[str]], list[str]] = {}
    for organisation, role in pairs:
        grant = policy.grant(organisation, [role], purpose.id)
        blocks.setdefault((organisation, grant.approved), []).append(role)
    for (organisation, approved), roles in blocks.items():
        org = policy.organisations[organisation]
        grant = policy.grant(organisation, roles, purpose.id)
        # For a non-active purpose the reasons are the status code, so rule ids only when active.
        rule_ids = sorted({grant.reasons[c] for c in approved}) if purpose.active else []
        lines.append(f"#### {org.id} ({org.naam}) — rollen: {', '.join(roles)}")
        lines.append("")
        if rule_ids:
            lines += [f"Regels: {', '.join(f'`{r}`' for r in rule_ids)}", ""]
        lines += _grouped(policy, approved) or ["- (geen velden)"]
        refused = [
            (c, grant.reasons[c])
            for rule in policy.rules
            if rule.effect == "toestaan"
            and rule.purpose == purpose.id
            and rule.matches(organisation, frozenset(roles), purpose.id)
            for c in rule.coordinates
            if grant.reasons[c] in _SAFEGUARD_TEXT
        ]
        if refused:
            lines += ["", "Door een wettelijke waarborg geweigerd, hoewel een regel ze noemt:"]
            lines += [f"- `{c}`: {_SAFEGUARD_TEXT[code]}" for c, code in dict(refused).items()]
        lines.append("")

    forbids = [
        rule
        for rule in policy.rules
        if rule.effect == "verbieden" and rule.purpose in (purpose.id, WILDCARD)
    ]
    if forbids:
        lines += ["### Verboden velden (gaan voor elke toestemming)", ""]
        for rule in forbids:
            who = "alle organisaties" if rule.organisation == WILDCARD else rule.organisation
            whom = "alle rollen" if WILDCARD in rule.roles else ", ".join(rule.roles)
            fields = ", ".join(f"`{c}`" for c in rule.coordinates)
            lines.append(f"- `{rule.id}` ({who}; {whom}): {fields}")
        lines.append("")
    return lines


def purposes_table(policy: Policy) -> str:
    """The integrator's table of purposes (Markdown, English): per purpose the ``X-Doelbinding``
    value, its ``X-Verwerking`` values (processing activities), its status and who it is granted
    to (organisation: roles). Deterministic: the README embeds it and a test compares."""
    lines = [
        "| `X-Doelbinding` | `X-Verwerking` | status | granted to (organisation: roles) |",
        "| --- | --- | --- | --- |",
    ]
    for purpose in policy.purposes.values():
        granted: dict[str, set[str]] = {}
        for rule in policy.rules:
            if rule.effect == "toestaan" and rule.purpose == purpose.id:
                granted.setdefault(rule.organisation, set()).update(rule.roles)
        who = "; ".join(
            f"{org}: {', '.join(sorted(roles))}" for org, roles in sorted(granted.items())
        )
        activities = ", ".join(f"`{a}`" for a in purpose.processing_activities)
        lines.append(f"| `{purpose.id}` | {activities} | {purpose.status} | {_cell(who) or '—'} |")
    return "\n".join(lines) + "\n"


def render_markdown(policy: Policy) -> str:
    """The processing register / DPIA annex for ``policy`` as Markdown (Dutch).

    Contains: the policy's label and content hash, the organisations, an overview table of all
    purposes, and per purpose its description, legal bases (including art. 9/10), status and
    reason, row scope, caps, retention, processing activities, the organisations and roles it is
    granted to with their effective fields grouped by type, fields refused by a legal safeguard,
    and the forbidding rules that apply.
    """
    lines = [
        "# Verwerkingsregister Ketenpoort — bijlage bij de DPIA",
        "",
        "Gegenereerd uit het ketenbeleid; niet met de hand bewerken.",
        "",
        f"- **Beleid**: {policy.label}",
        f"- **Beleidsversie (SHA-256)**: `{policy.version}`",
        f"- **Verwerkingsregister**: <{policy.register_base}>",
        "",
        "## Organisaties",
        "",
        "| Id | OIN | Naam | Rollen |",
        "|---|---|---|---|",
    ]
    for org in policy.organisations.values():
        lines.append(
            f"| {org.id} | {org.oin} | {_cell(org.naam)} | {_cell(', '.join(org.roles))} |"
        )
    lines += [
        "",
        "## Overzicht doelbindingen",
        "",
        "| Doelbinding | Status | Art. 9 | Art. 10 | Rijbereik | Max. personen | Quotum/dag "
        "| Bewaartermijn (dagen) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for purpose in policy.purposes.values():
        scope = purpose.rijbereik.describe() if purpose.rijbereik else "—"
        lines.append(
            f"| `{purpose.id}` | {purpose.status} "
            f"| {'ja' if purpose.bijzondere_grondslag else 'nee'} "
            f"| {'ja' if purpose.strafrechtelijke_grondslag else 'nee'} "
            f"| {_cell(scope)} | {purpose.max_subjects} | {purpose.quota_per_day} "
            f"| {purpose.retention_days} |"
        )
    lines.append("")
    for purpose in policy.purposes.values():
        lines += _purpose_section(policy, purpose)
    return "\n".join(lines).rstrip("\n") + "\n"
